"""Typed errors. Library code raises these; only workbench.cli turns them into messages and exit codes."""

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_ENVIRONMENT = 4


class WorkbenchError(Exception):
    exit_code = EXIT_BAD_INPUT

    @classmethod
    def with_exit_code(cls, message: str, code: int) -> "WorkbenchError":
        """An error that exits with `code`: one summing up others (a sweep's units, a matrix's members)."""
        error = cls(message)
        error.exit_code = code
        return error


class BadInput(WorkbenchError):
    """A file, path, field or option the user gave is wrong. Exit 3."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(WorkbenchError):
    """Something missing from the machine: an extra, a tool, a GPU. Exit 4."""

    exit_code = EXIT_ENVIRONMENT


class MissingExtra(EnvironmentProblem):
    def __init__(self, purpose: str, extra: str, module: str):
        super().__init__(
            f"{purpose} needs {module}: pip install 'ckpt-workbench[{extra}]'"
        )
        self.extra = extra
        self.module = module


class GateFailed(WorkbenchError):
    exit_code = EXIT_GATE_FAILED

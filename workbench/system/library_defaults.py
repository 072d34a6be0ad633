"""How wb runs the libraries it loads, in one place: thread and tokenizer defaults, and the warnings that tell a
wb user nothing set aside. Call `apply_library_defaults()` before those libraries load, in every process of wb's
own (the CLI, a sweep's Ray worker); a child process that inherits the environment needs only
`quiet_library_warnings()`."""

import logging
import os

# torchao (GPTQModel needs it) warns on every import that its CUDA extensions do not load with CPU-only torch,
# and torch's pytree adds deprecation notes for torchao's enums.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree")

# bitsandbytes, on CPUs with AVX512-BF16 (Sapphire Rapids and later), tries to fetch a 4-bit matmul kernel from the
# hub (kernels-community) and warns when it cannot; it then runs its own CPU kernel, as on every other CPU.
BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_HUB_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_library_warnings() -> None:
    if os.environ.get("WB_VERBOSE") == "1":  # `wb -v`: everything the libraries say
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    bnb = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropMessage) for f in bnb.filters):
        bnb.addFilter(_DropMessage(BNB_HUB_KERNEL_MESSAGE))  # only that one: its other warnings still show


def apply_library_defaults() -> None:
    # Torch spins idle threads that starve the other core under contention (5x slower steps here).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_library_warnings()

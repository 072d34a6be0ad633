"""Finding and validating eval suites (evals/suites/*.yaml, or a path)."""

from dataclasses import dataclass
from pathlib import Path

from workbench.config import SuiteConfig, load_yaml_model
from workbench.content import content_dir
from workbench.data.records import load_chat_items, sha256_file
from workbench.errors import BadInput


@dataclass
class LoadedSuite:
    config: SuiteConfig
    path: Path
    sha: str
    items: dict[str, list[dict]]  # task name -> validated chat items (limit applied)


def find_suite(ref: str, evals_dir: str | None = None) -> Path:
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise BadInput(f"suite file '{ref}': no such file")
        return path
    folder = content_dir("evals", evals_dir) / "suites"
    for candidate in (folder / f"{ref}.yaml", folder / f"{ref}.yml"):
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in folder.glob("*.y*ml"))
    raise BadInput(f"suite '{ref}': not found in {folder} (known: {', '.join(known) or 'none'})")


def load_suite(ref: str, *, evals_dir: str | None = None, limit: int | None = None) -> LoadedSuite:
    """Parse the suite and every task's data now, so bad input fails before any model loads."""
    path = find_suite(ref, evals_dir)
    config = load_yaml_model(path, SuiteConfig)
    if not config.tasks and not config.harness:
        raise BadInput(f"{path}: a suite needs 'tasks', 'harness' or both")
    names = [t.name for t in config.tasks]
    if len(set(names)) != len(names):
        raise BadInput(f"{path}: tasks: duplicate task names")
    items = {}
    for task in config.tasks:
        data_path = (path.parent / task.data).resolve()
        loaded = load_chat_items(data_path)
        cap = min(x for x in (limit, task.limit, len(loaded)) if x is not None)
        items[task.name] = loaded[:cap]
    return LoadedSuite(config=config, path=path.resolve(), sha=sha256_file(path), items=items)

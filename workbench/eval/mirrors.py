"""Offline mirrors of hub benchmark datasets, and the hook that makes lm-eval's own tasks read them.

A mirror is a folder a user points wb at (--data-dir / WB_DATA_DIR) holding datasets in the exact schema of
the hub datasets lm-eval loads. While `use_mirrors(...)` is active, every lm-eval task whose dataset the
mirror holds reads it from there; prompts, splits, few-shot source and scoring stay lm-eval's own.
"""

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from workbench.data.records import sha256_file
from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.extras import require


@dataclass(frozen=True)
class Mirror:
    folder: str  # top-level folder in the data dir
    hub_ids: tuple[str, ...]  # dataset ids (and aliases) lm-eval tasks name as dataset_path
    keys: tuple[str, ...]  # keys every row must have (the hub schema)
    configs: tuple[str | None, ...] | None  # hub configs it stands in for (None: the default); None: a file per config

    @property
    def hub_id(self) -> str:
        return self.hub_ids[0]

    def relpath(self, split: str, config: str | None) -> str:
        if self.configs is None:
            return f"{self.folder}/{split}/{config}.jsonl"
        return f"{self.folder}/{split}.jsonl"

    def layout(self, split: str = "test") -> str:
        return self.relpath(split, "<subject>")


MIRRORS = (
    Mirror("mmlu", ("cais/mmlu", "hails/mmlu_no_train"), ("question", "subject", "choices", "answer"), None),
    Mirror("gsm8k", ("openai/gsm8k", "gsm8k"), ("question", "answer"), ("main",)),
    Mirror("ifeval", ("google/IFEval",), ("key", "prompt", "instruction_id_list", "kwargs"), (None,)),
)


def mirror_for(dataset_path: str | None) -> Mirror | None:
    for mirror in MIRRORS:
        if dataset_path in mirror.hub_ids:
            return mirror
    return None


def mirror_files(data_dir: Path, mirror: Mirror, config: str | None, splits: list[str], task: str) -> dict[str, Path]:
    """The mirror's file for each split `task` uses, checked to exist and to have the hub schema."""
    if not (data_dir / mirror.folder).is_dir():
        raise BadInput(
            f"data dir {data_dir} has no {mirror.folder}/ (needed by task {task}; expected "
            f"{mirror.layout()} in the {mirror.hub_id} schema)"
        )
    if mirror.configs is not None and config not in mirror.configs:
        raise BadInput(
            f"data dir {data_dir}: {mirror.folder}/ mirrors {mirror.hub_id} config {', '.join(map(str, mirror.configs))} "
            f"only, but task {task} needs config '{config}'"
        )
    files = {}
    for split in splits:
        path = data_dir / mirror.relpath(split, config)
        if not path.is_file():
            raise BadInput(f"{path}: missing from the data dir (task {task} uses split '{split}' of {mirror.hub_id})")
        check_schema(path, mirror)
        files[split] = path
    return files


def check_schema(path: Path, mirror: Mirror) -> None:
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        raise BadInput(f"{path}: line 1 is not a JSON object (expected the {mirror.hub_id} schema)") from None
    if not isinstance(row, dict):
        raise BadInput(f"{path}: line 1 is not a JSON object (expected the {mirror.hub_id} schema)")
    missing = [k for k in mirror.keys if k not in row]
    if missing:
        raise BadInput(f"{path}: missing keys {', '.join(missing)} (the {mirror.hub_id} schema has {', '.join(mirror.keys)})")


def task_splits(task) -> list[str]:
    """Every split an lm-eval ConfigurableTask reads: test, validation, training and the few-shot source."""
    cfg = task.config
    fewshot_cfg = getattr(task, "fewshot_cfg", None)
    names = [cfg.test_split, cfg.validation_split, cfg.training_split, cfg.fewshot_split,
             getattr(fewshot_cfg, "split", None)]
    return list(dict.fromkeys(n for n in names if n))


@contextlib.contextmanager
def use_mirrors(data_dir: Path | None, sources: dict):
    """While active, lm-eval tasks read mirrored datasets from `data_dir`; the rest come from the hub.

    lm-eval builds a task's dataset in ConfigurableTask.download (called from the task's constructor, where
    the task config with its splits is known); we replace that one method, for the duration only.
    `sources` is filled with task name -> where its data came from.
    """
    task_mod = require("lm_eval.api.task", "Regression evals", "eval")
    datasets = require("datasets", "Regression evals", "eval")
    cls = task_mod.ConfigurableTask
    original = cls.download

    def download(self, dataset_kwargs=None, **kwargs):
        cfg = self.config
        mirror = mirror_for(cfg.dataset_path)
        if data_dir is None or mirror is None or callable(cfg.custom_dataset):
            _download_from_hub(self, original, dataset_kwargs, kwargs, data_dir, sources)
            return
        files = mirror_files(data_dir, mirror, cfg.dataset_name, task_splits(self), cfg.task)
        self.dataset = datasets.load_dataset("json", data_files={s: str(p) for s, p in files.items()})
        sources[cfg.task] = {
            "source": "mirror", "dataset": cfg.dataset_path, "config": cfg.dataset_name,
            "data_dir": str(data_dir.resolve()),
            "files": {s: {"path": str(p.relative_to(data_dir)), "sha256": sha256_file(p)} for s, p in files.items()},
        }

    cls.download = download
    try:
        yield sources
    finally:
        cls.download = original


def _download_from_hub(task, original, dataset_kwargs, kwargs, data_dir, sources) -> None:
    cfg = task.config
    local = _local_files((dataset_kwargs or {}).get("data_files"))
    offline_why = None
    if not local and not callable(cfg.custom_dataset):
        from workbench.checkpoints.hub_probe import go_offline_if_unreachable

        offline_why = go_offline_if_unreachable()
    try:
        original(task, dataset_kwargs, **kwargs)
    except ConnectionError as exc:  # datasets raises this both offline (HF_HUB_OFFLINE) and without a network
        mirror = mirror_for(cfg.dataset_path)
        if mirror:
            hint = (f": go online, or pass --data-dir (or WB_DATA_DIR) with a local mirror ({mirror.layout()} "
                    f"in the {mirror.hub_id} schema)")
        else:
            hint = f"; a --data-dir mirror can stand in only for {', '.join(m.hub_id for m in MIRRORS)}"
        raise EnvironmentProblem(
            f"task {cfg.task} needs dataset {cfg.dataset_path}"
            f"{f' (config {cfg.dataset_name})' if cfg.dataset_name else ''} from the Hugging Face hub, "
            f"which is unreachable ({offline_why or (str(exc).splitlines() or ['no network'])[0]}){hint}"
        ) from None
    if callable(cfg.custom_dataset):
        sources[cfg.task] = {"source": "custom", "dataset": cfg.dataset_path, "config": cfg.dataset_name}
    elif local:  # a user's task over local files (dataset_path: json/csv/..., data_files: ...)
        sources[cfg.task] = {"source": "files", "dataset": cfg.dataset_path, "files": local}
    else:
        sources[cfg.task] = {"source": "hub", "dataset": cfg.dataset_path, "config": cfg.dataset_name,
                             "revision": (dataset_kwargs or {}).get("revision")}


def _local_files(data_files) -> dict:
    """split -> {path, sha256} for data_files that name local files, so their content keys the result cache."""
    if not data_files:
        return {}
    if not isinstance(data_files, dict):
        data_files = {"train": data_files}
    out = {}
    for split, paths in data_files.items():
        for p in paths if isinstance(paths, list) else [paths]:
            path = Path(str(p)).expanduser()
            if path.is_file():
                out.setdefault(split, []).append({"path": str(path.resolve()), "sha256": sha256_file(path)})
    return out

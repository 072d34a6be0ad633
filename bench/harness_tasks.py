"""Write a task folder for the raw `lm_eval` CLI that reads the local mirror instead of the hub.

Each YAML `include:`s lm-eval's own task YAML (prompts, splits, few-shot source, filters and metrics stay
lm-eval's) and overrides only where the data comes from: `dataset_path: json` with the mirror's JSONL files.
With `--include_path FOLDER` the raw CLI then runs mmlu / gsm8k offline, with no wb code involved, which is
what the parity check and bench/bench_harness.py compare `wb eval` against.

    .venv/bin/python bench/harness_tasks.py OUT_DIR [--data-dir /work/shared/data]
"""

import argparse
import os
from pathlib import Path

import yaml


def lm_eval_tasks_root() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def write_override_folder(data_dir: Path, out: Path) -> list[str]:
    """One override YAML per mmlu subject task and for gsm8k; returns the task names written."""
    root = lm_eval_tasks_root()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted((root / "mmlu" / "default").glob("mmlu_*.yaml")):
        cfg = yaml.safe_load(src.read_text())
        subject = cfg["dataset_name"]
        files = {split: str(data_dir / "mmlu" / split / f"{subject}.jsonl") for split in ("test", "dev")}
        written.append(_write(out, src, cfg["task"], files))
    gsm8k = root / "gsm8k" / "gsm8k.yaml"
    files = {split: str(data_dir / "gsm8k" / f"{split}.jsonl") for split in ("test", "train")}
    written.append(_write(out, gsm8k, "gsm8k", files))
    return written


def _write(out: Path, src: Path, task: str, files: dict[str, str]) -> str:
    override = {"include": str(src), "task": task, "dataset_path": "json", "dataset_name": None,
                "dataset_kwargs": {"data_files": files}}
    (out / f"{task}.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
    return task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("WB_DATA_DIR", "/work/shared/data")))
    args = parser.parse_args()
    names = write_override_folder(args.data_dir.resolve(), args.out)
    print(f"wrote {len(names)} task overrides to {args.out}")


if __name__ == "__main__":
    main()

"""The sweep file: which checkpoints, which suites and lm-eval tasks, and the `wb eval` settings for every unit."""

from pathlib import Path

from pydantic import Field, field_validator

from workbench.config import FreeForm, Strict, load_yaml_model
from workbench.runtimes.base import DTYPES


class Resources(Strict):
    """What one Ray task (one checkpoint's units) asks the cluster for."""

    num_cpus: float = Field(1, ge=0)
    """Ray's `num_cpus` per task."""
    num_gpus: float = Field(0, ge=0)
    """Ray's `num_gpus` per task (fractions share a GPU)."""
    memory_gb: float | None = Field(None, gt=0)
    """Ray's `memory` resource, for scheduling."""


class SweepConfig(Strict):
    """A sweep: every checkpoint on every suite and lm-eval task list, each pair one unit (a `wb eval` run)."""

    checkpoints: list[str] = Field(min_length=1)
    """Paths (globs allowed, relative to the sweep file), hub ids in the local cache, 'default'."""
    suites: list[str] = []
    """Suite names or YAML paths (relative to the sweep file)."""
    tasks: list[str] = []
    """lm-eval task lists: each entry ("mmlu_anatomy,gsm8k") is one unit per checkpoint."""
    limit: int | None = Field(None, ge=1)
    """As `wb eval --limit`: items per task."""
    no_harness: bool = False
    """As `wb eval --no-harness`: skip the suites' lm-eval tasks."""
    data_dir: str | None = None
    """As `wb eval --data-dir`: the local benchmark mirror (default: $WB_DATA_DIR)."""
    evals_dir: str | None = None
    """As `wb eval --evals-dir`: your own evals folder (default: bundled)."""
    base: str | None = None
    """As `wb eval --base`: the base model adapters are put on (default: each adapter's own)."""
    num_fewshot: int | None = Field(None, ge=0)
    """As `wb eval --num-fewshot` (lm-eval)."""
    batch_size: int | None = Field(None, ge=1)
    """As `wb eval --batch-size` (lm-eval)."""
    chat_template: bool | None = None
    """As `wb eval --apply-chat-template/--no-apply-chat-template` (lm-eval's apply_chat_template)."""
    gen_kwargs: FreeForm | None = None
    """As `wb eval --gen-kwargs` (lm-eval's generation settings)."""
    seed: int = 1234
    """As `wb eval --seed`."""
    dtype: str = "float32"
    """As `wb eval --dtype`: auto, float32, bfloat16, float16 or float64."""
    device: str = "auto"
    """As `wb eval --device`: auto (cuda when available, else cpu), cpu, cuda."""
    backend: str = "auto"
    """As `wb eval --backend`: auto, hf, vllm, llamacpp, endpoint."""
    no_cache: bool = False
    """As `wb eval --no-cache`: recompute lm-eval's results."""
    vllm_args: FreeForm | None = None
    """With backend vllm: engine arguments, as `wb eval --vllm-args`."""
    resources: Resources = Resources()
    """Ray: what each checkpoint's task asks the cluster for."""
    max_retries: int = Field(2, ge=0)
    """Ray: a unit whose worker or node dies runs again, at most this many times."""

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"expected one of {', '.join(DTYPES)}")
        return value


def load_sweep(path: Path) -> SweepConfig:
    from workbench.errors import BadInput

    config = load_yaml_model(path, SweepConfig)
    if not config.suites and not config.tasks:
        raise BadInput(f"{path}: a sweep needs 'suites', 'tasks' or both")
    return config

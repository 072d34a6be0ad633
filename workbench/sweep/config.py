"""The sweep file: which checkpoints, which suites and lm-eval tasks, and the `wb eval` settings for every unit."""

from pathlib import Path

from pydantic import Field, field_validator

from workbench.config import FreeForm, Strict, load_yaml_model
from workbench.runtimes.base import DTYPES


class Resources(Strict):
    """What one Ray task (one checkpoint's units) asks the cluster for."""

    num_cpus: float = Field(1, ge=0)
    num_gpus: float = Field(0, ge=0)
    memory_gb: float | None = Field(None, gt=0)  # Ray's `memory` resource, for scheduling


class SweepConfig(Strict):
    checkpoints: list[str] = Field(min_length=1)  # paths (globs allowed, relative to the sweep file), hub ids, 'default'
    suites: list[str] = []  # suite names or YAML paths (relative to the sweep file)
    tasks: list[str] = []  # lm-eval task lists: each entry ("mmlu_anatomy,gsm8k") is one unit per checkpoint
    # `wb eval`'s settings, by the same names
    limit: int | None = Field(None, ge=1)
    no_harness: bool = False
    data_dir: str | None = None
    evals_dir: str | None = None
    base: str | None = None
    num_fewshot: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    chat_template: bool | None = None
    gen_kwargs: FreeForm | None = None
    seed: int = 1234
    dtype: str = "float32"
    device: str = "auto"
    backend: str = "auto"
    no_cache: bool = False
    vllm_args: FreeForm | None = None  # with backend vllm: engine arguments, as `wb eval --vllm-args`
    # Ray
    resources: Resources = Resources()
    max_retries: int = Field(2, ge=0)  # a unit whose worker or node dies runs again, at most this many times

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

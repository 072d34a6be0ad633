"""Pydantic models for every YAML file wb reads. Errors are reported all at once, with file and key."""

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.errors import BadInput
from workbench.system.user_files import parse_yaml, read_text


class Strict(BaseModel):
    # allow_inf_nan=False: a NaN or infinite float anywhere in a user's file is refused with its key (a learning
    # rate of .inf trains a model of NaNs; a temperature of .inf samples random tokens).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def finite_values(value, where: str = ""):
    """Free-form mappings handed on to a library as they are (TRL configs, PEFT, generation kwargs): the same
    finite-numbers rule as the typed fields, which pydantic cannot apply to Any."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'value'}: {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            finite_values(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            finite_values(item, f"{where}[{i}]")
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(finite_values)]


# ---- training recipes -------------------------------------------------------------------------------------

class LoraSpec(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    use_dora: bool = False
    use_rslora: bool = False


class TrainingSpec(Strict):
    max_steps: int = Field(60, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(256, ge=16)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    lr_scheduler_type: str = "cosine"
    logging_steps: int = Field(5, ge=1)
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    # A resumable checkpoint (adapter, optimizer, scheduler, RNG, data position) every N steps, in OUT.checkpoints/
    # beside the output folder: `wb train ... --resume` continues from the last one. null: none.
    save_steps: int | None = Field(50, ge=1)
    optim: str = "adamw_torch"  # transformers' `optim` (e.g. galore_adamw, which needs the galore-torch package)
    optim_target_modules: list[str] | None = None  # GaLore's modules
    loraplus_lr_ratio: float | None = Field(None, gt=0)  # LoRA+: lora_B learns this many times faster than lora_A


class DataChecksSpec(Strict):
    # Eval data the training rows must not leak (suites, mirrored lm-eval tasks, JSONL files): `wb train` refuses
    # rows that share n-grams with it unless --allow-contamination.
    against: list[str] = []
    ngram: int = Field(13, ge=1)


class EvalDuringTrainingSpec(Strict):
    """Evaluate the adapter being trained every `every_steps` steps (and the base at step 0) on a suite."""

    suite: str  # a suite name (evals/suites) or a path relative to the recipe
    every_steps: int = Field(ge=1)
    limit: int | None = Field(None, ge=1)  # items per task (lm-eval: per subtask), as `wb eval --limit`
    # Forgetting gates, each a gate entry with max_drop (workbench.gate's rule: the drop must exceed max_drop and
    # be significant), versus the step-0 evaluation of the base. A failing gate stops training (exit 1).
    max_drop: list["GateSpec"] = []

    @model_validator(mode="after")
    def _drop_gates_only(self):
        for gate in self.max_drop:
            if gate.max_drop is None:
                raise ValueError(f"max_drop: gate '{gate.label}' needs a max_drop value")
        return self


class RewardSpec(Strict):
    """GRPO's reward: a scorer of a suite task, the same code `wb eval` scores that task with."""

    suite: str
    task: str | None = None  # may be left out when the suite has one task
    scorer: str | None = None  # a scorer's label (its name or type); may be left out when the task has one


TRAIN_METHODS = ("sft", "dpo", "orpo", "kto", "grpo")
QUANTIZATIONS = ("nf4", "fp4", "int8")


class TrainConfig(Strict):
    name: str
    method: Literal[TRAIN_METHODS] = "sft"
    base: str = "default"
    train_data: str  # JSONL path, relative to the config file
    # messages | sharegpt | alpaca | prompt_completion | preference | unpaired | prompt; detected when left out
    data_format: str | None = None
    lora: LoraSpec | None = None  # sugar for `peft: {type: lora, ...}`; LoRA r=16 when neither is given
    peft: FreeForm | None = None  # any PEFT config: `type` plus the fields of PEFT's own config class
    quantization: Literal[QUANTIZATIONS] | None = None  # QLoRA: the base loads through bitsandbytes
    reward: RewardSpec | None = None  # grpo only
    method_args: FreeForm = {}  # fields of the method's TRL config (DPOConfig.beta, GRPOConfig.num_generations)
    training: TrainingSpec = TrainingSpec()
    data_checks: DataChecksSpec = DataChecksSpec()
    eval_during_training: EvalDuringTrainingSpec | None = None
    # Trainer loggers (transformers' report_to); MLflow reads MLFLOW_TRACKING_URI, TensorBoard writes event
    # files into the train run's folder. Secrets (tokens, API keys) come from the environment only.
    report_to: list[Literal["mlflow", "tensorboard", "wandb", "trackio"]] = []

    @model_validator(mode="before")
    @classmethod
    def _report_to_list(cls, data):
        if isinstance(data, dict) and isinstance(data.get("report_to"), str):
            data = {**data, "report_to": [] if data["report_to"] == "none" else [data["report_to"]]}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.lora is not None and self.peft is not None:
            raise ValueError("give either 'lora' or 'peft', not both ('lora' is shorthand for 'peft: {type: lora}')")
        if self.method == "grpo" and self.reward is None:
            raise ValueError("method grpo needs a 'reward' (suite, task, scorer)")
        if self.method != "grpo" and self.reward is not None:
            raise ValueError(f"'reward' is for method grpo; method {self.method} learns from its data")
        return self


# ---- eval suites --------------------------------------------------------------------------------------------

JUDGE_SCORERS = ("judge", "judge_pairwise")


class ScorerSpec(Strict):
    type: Literal["exact", "normalized_exact", "json_valid", "json_fields", "json_schema", "contains", "regex",
                  "numeric", "token_f1", "rouge_l", "judge", "judge_pairwise"]
    name: str | None = None
    pattern: str | None = None  # regex
    tolerance: float = Field(0.0, ge=0)  # numeric
    # json_schema: the schema inline, or a .json file path relative to the suite (load_suite reads it in)
    json_schema: FreeForm | str | None = None
    # judge (rubric grading) and judge_pairwise (versus --baseline): see docs/judge.md
    rubric: str | None = None
    scale: tuple[int, int] = (1, 5)
    use_reference: bool = True  # show the judge the sample's reference answer when it has one

    @model_validator(mode="after")
    def _needs(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("a json_schema scorer needs 'json_schema' (inline or a file path)")
        if self.type == "regex" and self.pattern is None:
            raise ValueError("a regex scorer needs 'pattern'")
        if self.type == "judge" and not self.rubric:
            raise ValueError("a judge scorer needs a 'rubric'")
        if self.scale[0] >= self.scale[1]:
            raise ValueError("scale: the low end must be below the high end")
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


class GenerationSpec(Strict):
    max_new_tokens: int = Field(96, ge=1)
    temperature: float = Field(0.0, ge=0)
    stop: list[str] = []
    batch_size: int = Field(16, ge=1)
    chat_template: bool = True


class TaskSpec(Strict):
    name: str
    data: str  # JSONL with "messages" (or "prompt") and "reference"; relative to the suite file
    scorers: list[ScorerSpec] = Field(min_length=1)
    generation: GenerationSpec = GenerationSpec()
    limit: int | None = Field(None, ge=1)
    # Human-graded answers (JSONL: id, answer, score) the judge is checked against (Cohen's kappa)
    gold: str | None = None


class HarnessSpec(Strict):
    tasks: list[str] = Field(min_length=1)
    limit: int | float | None = None  # lm-eval's: a count of items per task, or a fraction of each below 1
    num_fewshot: int | None = Field(None, ge=0)
    batch_size: int = Field(8, ge=1)
    apply_chat_template: bool = False
    gen_kwargs: FreeForm = {}
    include_path: str | None = None  # a folder of the user's lm-eval task YAML, relative to the suite file

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value):
        if value is not None and value <= 0:
            raise ValueError(f"{value} must be above 0 (items per task, or a fraction of each task below 1)")
        return value


class GateSpec(Strict):
    """One release gate on a metric; the decision rules are in workbench.gate and docs/ci-gate.md."""

    task: str
    metric: str
    name: str | None = None
    min_value: float | None = None
    max_value: float | None = None  # for metrics where lower is better
    max_drop: float | None = Field(None, ge=0)  # absolute, in the metric's units, versus the baseline
    significance: float = Field(0.05, gt=0, lt=1)
    test: Literal["auto", "mcnemar", "bootstrap"] = "auto"
    higher_is_better: bool | None = None  # overrides the run's own record (lm-eval leaves some unset)

    @model_validator(mode="after")
    def _has_a_rule(self):
        if self.min_value is None and self.max_value is None and self.max_drop is None:
            raise ValueError("a gate needs min_value, max_value or max_drop")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.task}/{self.metric}"


class JudgeSpec(Strict):
    """Where the LLM judge runs. Without base_url wb starts llama.cpp's server on loopback for `model`."""

    base_url: str | None = None  # an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1
    model: str = "default"  # local: 'default' or a .gguf path; external: the endpoint's model name
    api_key_env: str | None = None  # the NAME of the environment variable holding the key, never the key
    response_format: Literal["auto", "json_schema", "json_object", "grammar", "none"] = "auto"
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    max_tokens: int = Field(256, ge=16)
    n_ctx: int = Field(4096, ge=512)  # local server only


class SuiteConfig(Strict):
    name: str
    description: str = ""
    tasks: list[TaskSpec] = []
    # lm-eval runs; several entries when tasks need different settings (limit, shots, generation length).
    harness: list[HarnessSpec] = []
    gates: list[GateSpec] = []
    judge: JudgeSpec = JudgeSpec()


EvalDuringTrainingSpec.model_rebuild()  # its gates are GateSpec, defined with the suites below
TrainConfig.model_rebuild()


def parse_yaml_mapping(text: str, path: Path) -> dict:
    """YAML text that must be a mapping at the top level; a BadInput naming `path` (and the line) otherwise. Read
    through workbench.system.user_files, the bounded loader (size, depth, alias expansion) of every user file."""
    raw = parse_yaml(text, path)
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_yaml_model(path: Path, model: type[BaseModel]) -> BaseModel:
    """Parse YAML into `model`, raising one BadInput that lists every problem with its key."""
    raw = parse_yaml_mapping(read_text(path, "a YAML file"), path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
        )
        raise BadInput(f"{path}: {problems}") from None

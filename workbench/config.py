"""Pydantic models for every YAML file wb reads. Errors are reported all at once, with file and key."""

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workbench.errors import BadInput
from workbench.eval.breakdown import TAG, metric_name
from workbench.system.user_files import parse_yaml, read_text


class Strict(BaseModel):
    # allow_inf_nan=False: a NaN or infinite float anywhere in a user's file is refused with its key (a learning
    # rate of .inf trains a model of NaNs; a temperature of .inf samples random tokens). Attribute docstrings are
    # each key's meaning in the generated reference (workbench.reference).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


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
    """LoRA, the shorthand for `peft: {type: lora, ...}` (PEFT's LoraConfig)."""

    r: int = Field(16, ge=1)
    """The rank of each low-rank update."""
    alpha: int = Field(32, ge=1)
    """LoRA's scaling numerator: updates are scaled by alpha / r (alpha / sqrt(r) with use_rslora)."""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the LoRA branch's input during training."""
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    """The modules to adapt: names (a module whose name is the entry or ends with `.entry`) or `all-linear`. Each
    name must match a module of the base."""
    use_dora: bool = False
    """DoRA: weight-decomposed LoRA (a magnitude vector beside the low-rank direction update)."""
    use_rslora: bool = False
    """Rank-stabilized LoRA: scale by alpha / sqrt(r)."""


class TrainingSpec(Strict):
    """The trainer's settings (transformers' TrainingArguments by the same names)."""

    max_steps: int = Field(60, ge=1)
    """Optimizer steps to train for (`wb train --max-steps` overrides it)."""
    learning_rate: float = Field(2e-4, gt=0)
    """The peak learning rate."""
    batch_size: int = Field(8, ge=1)
    """Rows per device per step (per_device_train_batch_size)."""
    gradient_accumulation_steps: int = Field(1, ge=1)
    """Batches whose gradients are summed into one optimizer step."""
    max_length: int = Field(256, ge=16)
    """Tokens per rendered row; longer rows are cut."""
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    """The share of max_steps spent warming the learning rate up from 0."""
    lr_scheduler_type: str = "cosine"
    """transformers' scheduler name (`cosine`, `linear`, `constant`, ...)."""
    logging_steps: int = Field(5, ge=1)
    """The loss is logged every this many steps (the train run's loss.jsonl, MLflow, TensorBoard)."""
    seed: int = 0
    """Seeds the data order, LoRA's initialization and dropout."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision; bf16 and fp16 need a GPU that supports them."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more time."""
    save_steps: int | None = Field(50, ge=1)
    """A resumable checkpoint (adapter, optimizer, scheduler, RNG, data position) every N steps, in OUT.checkpoints/
    beside the output folder: `wb train ... --resume` continues from the last one. null: none."""
    optim: str = "adamw_torch"
    """transformers' `optim` (e.g. galore_adamw, which needs the galore-torch package)."""
    optim_target_modules: list[str] | None = None
    """GaLore's modules (with a galore_* optim)."""
    loraplus_lr_ratio: float | None = Field(None, gt=0)
    """LoRA+: lora_B learns this many times faster than lora_A."""


class DataChecksSpec(Strict):
    """Checks of the training rows before training starts."""

    against: list[str] = []
    """Eval data the training rows must not leak (suite names or paths, mirrored lm-eval tasks, JSONL files; paths
    relative to the recipe): `wb train` refuses rows that share n-grams with it unless --allow-contamination."""
    ngram: int = Field(13, ge=1)
    """The n-gram length of the overlap check (13 is lm-eval's decontamination rule)."""


class EvalDuringTrainingSpec(Strict):
    """Evaluate the adapter being trained every `every_steps` steps (and the base at step 0) on a suite."""

    suite: str
    """A suite name (evals/suites) or a path relative to the recipe."""
    every_steps: int = Field(ge=1)
    """Evaluate every this many optimizer steps."""
    limit: int | None = Field(None, ge=1)
    """Items per task (lm-eval: per subtask), as `wb eval --limit`."""
    max_drop: list["GateSpec"] = []
    """Forgetting gates, each a gate entry with max_drop (workbench.gate's rule: the drop must exceed max_drop and
    be significant), versus the step-0 evaluation of the base. A failing gate stops training (exit 1)."""

    @model_validator(mode="after")
    def _drop_gates_only(self):
        for gate in self.max_drop:
            if gate.max_drop is None:
                raise ValueError(f"max_drop: gate '{gate.label}' needs a max_drop value")
        return self


class RewardSpec(Strict):
    """GRPO's reward: a scorer of a suite task, the same code `wb eval` scores that task with."""

    suite: str
    """A suite name or a path relative to the recipe."""
    task: str | None = None
    """The suite's task; may be left out when the suite has one task."""
    scorer: str | None = None
    """A scorer's label (its name or type); may be left out when the task has one."""


TRAIN_METHODS = ("sft", "dpo", "orpo", "kto", "grpo")
QUANTIZATIONS = ("nf4", "fp4", "int8")


class TrainConfig(Strict):
    """A training recipe."""

    name: str
    """The recipe's name: the train run and the adapter's lineage carry it."""
    method: Literal[TRAIN_METHODS] = "sft"
    """TRL's trainer: supervised (sft), preference (dpo, orpo, kto) or reinforcement with a reward (grpo)."""
    base: str = "default"
    """The model to fine-tune: `default`, an HF model folder, or a hub id in the local cache."""
    train_data: str
    """The training rows (JSONL), relative to the recipe."""
    data_format: str | None = None
    """messages | sharegpt | alpaca | prompt_completion | preference | unpaired | prompt; detected when left out."""
    chat_template: str | None = None
    """The chat template rows are rendered with, saved with the adapter's tokenizer (chat_template.jinja) so that
    eval, merge and export use it: a name (chatml, gemma, llama3, mistral, phi3, qwen3: each renders as the family's
    official template; qwen3 with tools and thinking) or a .jinja file, relative to the recipe. Needed for a base
    model, whose tokenizer has none; left out, the base's own template is used."""
    lora: LoraSpec | None = None
    """Shorthand for `peft: {type: lora, ...}`; LoRA r=16 when neither is given."""
    peft: FreeForm | None = None
    """Any PEFT config: `type` (lora, ia3, vera, adalora, loha, lokr, boft, ...) plus the fields of PEFT's own config
    class, each checked against its type there."""
    quantization: Literal[QUANTIZATIONS] | None = None
    """QLoRA: the base loads quantized through bitsandbytes (needs a GPU)."""
    reward: RewardSpec | None = None
    """The reward of method grpo (required there, refused elsewhere)."""
    method_args: FreeForm = {}
    """Fields of the method's TRL config (DPOConfig.beta, GRPOConfig.num_generations)."""
    training: TrainingSpec = TrainingSpec()
    """The trainer's settings."""
    data_checks: DataChecksSpec = DataChecksSpec()
    """Checks of the rows before training (contamination with eval data)."""
    eval_during_training: EvalDuringTrainingSpec | None = None
    """Evaluate on a suite while training, with forgetting gates."""
    report_to: list[Literal["mlflow", "tensorboard", "wandb", "trackio"]] = []
    """Trainer loggers (transformers' report_to); MLflow reads MLFLOW_TRACKING_URI, TensorBoard writes event files
    into the train run's folder. Secrets (tokens, API keys) come from the environment only."""

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

BENCHMARKS = ("mt_bench", "alpaca_eval")
JUDGE_SCORERS = ("judge", "judge_pairwise", "mt_bench", "alpaca_eval")

# What each scorer type does to one sample (the reference's table of scorer types reads this).
SCORER_TYPES = {
    "exact": "1 when the output equals the reference, both stripped of surrounding whitespace, else 0.",
    "normalized_exact": "exact after lowercasing, removing punctuation and collapsing whitespace.",
    "contains": "1 when the normalized reference (as normalized_exact) is a substring of the normalized output.",
    "regex": "1 when `pattern` matches the output: anywhere in it (`match: search`, the default, Python's re.search) "
             "or the whole output stripped of surrounding whitespace (`match: full`).",
    "numeric": "1 when a number taken from the output is within `tolerance` (absolute) of the reference's number. "
               "Which number: `extract: last` (the default), `first`, `whole` (the whole output must be one number) "
               "or `regex` (`pattern`'s first group, else its whole match). The reference's number is the reference "
               "itself when it is one number, else its last number. Commas in numbers are ignored.",
    "json_valid": "1 when the output (stripped) parses as a JSON object.",
    "json_fields": "The share of the reference object's fields the output's JSON object reproduces exactly (0 when "
                   "the output is not a JSON object).",
    "json_schema": "1 when the output parses as JSON valid against `json_schema` (inline, or a .json file relative "
                   "to the suite).",
    "token_f1": "SQuAD's token F1 (lowercased, punctuation and articles removed, bag-of-tokens overlap), in [0, 1].",
    "rouge_l": "ROUGE-L F-measure (longest common subsequence of tokens), from Google's rouge-score package.",
    "judge": "An LLM judge grades the output on `rubric` and `scale` (docs/judge.md); the metric is the mean grade "
             "mapped to [0, 1].",
    "python": "Your own function (`function`), called on each sample: it returns a number, a bool, or several named "
              "values with an explanation; each named value is a metric. It RUNS YOUR CODE, in wb's process, with "
              "your permissions (see README, \"Your own scorer\").",
    "judge_pairwise": "An LLM judge compares the output with the baseline run's answer (`wb eval --baseline`) in "
                      "both orders (a win counts only when both orders agree, else a tie); the metric is the win "
                      "rate, ties counting half.",
    "mt_bench": "MT-Bench's single-answer grading (task `benchmark: mt_bench`): the judge rates each of the two "
                "turns 1-10 with FastChat's official prompts (single-v1; single-math-v1 with GPT-4's reference "
                "answers for math, reasoning and coding; their multi-turn variants for turn 2), the rating parsed "
                "as FastChat parses it ([[N]], else [N], else -1: no rating, counted as an error); the metric is "
                "the mean of the valid ratings of both turns (FastChat's show_result), also as `LABEL.turn1`, "
                "`LABEL.turn2` and per category (`LABEL[category=C]`); a sample's score is the mean of its valid "
                "ratings.",
    "alpaca_eval": "AlpacaEval 2.0 (task `benchmark: alpaca_eval`): the judge compares each answer with a baseline's "
                   "answer to the same instruction (`against`: the reference model's, else the --baseline run's), "
                   "in both orders with wb's pairwise prompt or once with AlpacaEval's own (`annotator`); each "
                   "verdict is an AlpacaEval preference, the sample's value in [0, 1] (1 model better, 0.5 tie). "
                   "The metrics LABEL.win_rate and LABEL.length_controlled_winrate (fractions; x100 is AlpacaEval's "
                   "percentage) are computed by the alpaca-eval package (get_winrate, get_length_controlled_winrate); "
                   "the latter needs df_gamed.csv (see docs/benchmarks.md).",
    "tool_call": "The output's tool calls, parsed by the chat format's tool-call syntax (`tool_syntax`), judged by "
                 "the Berkeley Function Calling Leaderboard's AST rules against the item's `tools` and its expected "
                 "calls: `reference: [{name, arguments}, ...]` (exact; [] means no call expected) or BFCL's "
                 "`possible_answer: [{FUNCTION: {PARAM: [allowed values]}}]` (\"\" allowed: may be left out). "
                 "LABEL is the call accuracy; LABEL.unparseable, LABEL.wrong and LABEL.no_call the shares of "
                 "outputs whose calls do not parse, parse but are wrong, and hold no call (docs/tools.md).",
}


class ScorerSpec(Strict):
    """One way to score a task's samples; each scorer is one metric (named by `name`, else its type)."""

    type: Literal[tuple(SCORER_TYPES)]
    """What it measures: see the table of scorer types."""
    name: str | None = None
    """The metric's name (needed when a task has two scorers of one type)."""
    pattern: str | None = None
    """regex: the pattern (Python `re` syntax), compiled when the suite loads; numeric with `extract: regex`: the
    pattern whose first group (else whole match) is the number."""
    match: Literal["search", "full"] = "search"
    """regex: `search` matches anywhere in the output, `full` the whole output (stripped)."""
    extract: Literal["last", "first", "whole", "regex"] = "last"
    """numeric: which number of the output is compared."""
    tolerance: float = Field(0.0, ge=0)
    """numeric: the largest absolute difference still scored 1."""
    json_schema: FreeForm | str | None = None
    """json_schema: the schema inline, or a .json file path relative to the suite (read when the suite loads)."""
    rubric: str | None = None
    """judge (required) and judge_pairwise: what the judge grades by; see docs/judge.md."""
    scale: tuple[int, int] = (1, 5)
    """judge: the lowest and highest grade."""
    use_reference: bool = True
    """judge and judge_pairwise: show the judge the sample's reference answer when it has one."""
    against: Literal["reference", "baseline"] = "reference"
    """alpaca_eval: the answers compared with: `reference` (the item's reference, for `benchmark: alpaca_eval`
    the reference model gpt4_1106_preview's, as AlpacaEval 2.0) or `baseline` (the `wb eval --baseline` run's, which
    must be a run of the same suite)."""
    annotator: Literal["wb", "alpaca_eval"] = "wb"
    """alpaca_eval: `wb` (wb's pairwise prompt, both orders, a win only when they agree) or `alpaca_eval`
    (AlpacaEval's weighted_alpaca_eval_gpt4_turbo prompt from the installed package, one order as AlpacaEval picks
    it, the preference weighted by the endpoint's top_logprobs, else its chosen token; needs judge.base_url)."""
    length_controlled: bool | None = None
    """alpaca_eval: the length-controlled win rate. Unset: computed when df_gamed.csv is found (the mirror's
    alpaca_eval/ or the Hugging Face cache), else left out with the reason; true: required (exit 4 without it);
    false: not computed."""
    function: str | None = None
    """python (required): `path/to/file.py:function` (the file relative to the suite) or `package.module:function`
    (importable by wb's Python). wb imports it, so RUNS YOUR CODE, when the suite loads: once then on the first
    item with its reference as the output (to check what it returns, before any model loads), then on every
    answer. It gets one argument, a `workbench.eval.scorers.Sample` (id, messages as sent, output, reference,
    metadata, tags, task: the task's settings) and returns a number, a bool (1/0), or
    `{"values": {NAME: number, ...}, "explanation": "..."}` (each value the metric `LABEL.NAME`); it may be
    `async`. An exception on a sample is recorded on that sample (`errors`) and counted in the metric's `errors`;
    the sample gets no score. As a GRPO reward it counts its `reward` value, else its first one."""
    tool_syntax: Literal["hermes", "llama3", "mistral", "harmony", "json"] | None = None
    """tool_call: the syntax the model writes calls in (docs/tools.md). Unset: the checkpoint's chat format's, as
    read from its template; whatever the syntax, an output holding another syntax's markers, or plain JSON, is
    read too."""

    @model_validator(mode="after")
    def _needs(self):
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("a json_schema scorer needs 'json_schema' (inline or a file path)")
        if self.type == "regex" and self.pattern is None:
            raise ValueError("a regex scorer needs 'pattern'")
        if self.type == "numeric" and self.extract == "regex" and self.pattern is None:
            raise ValueError("a numeric scorer with extract: regex needs 'pattern'")
        if self.type == "python" and not (self.function and ":" in self.function.strip(":")):
            raise ValueError("a python scorer needs 'function: path/to/file.py:function' or 'module:function'")
        if self.type == "judge" and not self.rubric:
            raise ValueError("a judge scorer needs a 'rubric'")
        if self.scale[0] >= self.scale[1]:
            raise ValueError("scale: the low end must be below the high end")
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


class GenerationSpec(Strict):
    """How the checkpoint answers a task's items."""

    max_new_tokens: int = Field(96, ge=1)
    """The longest answer, in tokens."""
    temperature: float = Field(0.0, ge=0)
    """0 decodes greedily (reproducible); above 0 samples."""
    stop: list[str] = []
    """Strings that end an answer (cut before them), beside the chat format's own end-of-turn tokens."""
    batch_size: int = Field(16, ge=1)
    """Items generated together (transformers batches, llama.cpp sequences)."""
    chat_template: bool = True
    """Render items with the checkpoint's chat template; false sends the turns' contents as raw text, joined by
    blank lines."""
    n: int = Field(1, ge=1)
    """Answers sampled per item (each with its own seed: seed, seed + 1, ...). Above 1 it needs temperature > 0
    (greedy answers would be n copies of one); every metric is then the mean over an item's answers, and the
    samples keep all of them (`outputs`)."""
    seed: int = 0
    """The sampling seed of the first answer (temperature > 0); answer i uses seed + i."""
    thinking: Literal["on", "off"] | None = None
    """A reasoning model's thinking: `on` or `off` is passed as `enable_thinking` to templates that read it (Qwen 3:
    `off` writes an empty think block into the prompt); unset leaves the template's default. Scorers always see
    the final answer (the thinking stripped; an answer whose thinking never closes counts as no answer)."""

    @field_validator("thinking", mode="before")
    @classmethod
    def _yaml_switch(cls, value):
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value  # YAML's on/off


class FewshotPair(Strict):
    """A few-shot example as one exchange."""

    user: str
    """The example's question (a user turn)."""
    assistant: str
    """The example's answer (an assistant turn)."""


class ChatTurn(Strict):
    """A few-shot example as one chat message."""

    role: Literal["system", "user", "assistant"]
    """Who speaks."""
    content: str
    """What is said."""


class TaskSpec(Strict):
    """One task: items (prompt, reference) the checkpoint answers, and the scorers of the answers."""

    name: str
    """The task's name: metrics, gates and compare refer to it."""
    data: str | None = None
    """JSONL items with "messages" (or "prompt"), "reference" and optionally "id", "tags" (a list of strings: every
    metric is also reported per tag, as `METRIC[tag=TAG]`) and "metadata" (any JSON; see `breakdown`); relative to
    the suite file. A task gives either `data` or `benchmark`."""
    format: Literal["jsonl", "bfcl"] = "jsonl"
    """How `data` is read: `jsonl` (the items above; a tool_call item adds "tools" and "possible_answer") or
    `bfcl`: a Berkeley Function Calling Leaderboard question file (`BFCL_v4_CATEGORY.json`, as bfcl-eval ships it)
    whose expected calls are read from `possible_answer/` beside it (an irrelevance file has none: no call is
    expected); its functions become the items' `tools` (docs/tools.md)."""
    benchmark: Literal[BENCHMARKS] | None = None
    """A chat benchmark whose items wb reads from the data mirror (`--data-dir` / WB_DATA_DIR: its `mt_bench/` or
    `alpaca_eval/` folder) instead of `data`: `mt_bench` (80 two-turn questions; the second turn answered on the
    conversation holding the checkpoint's own first answer, at FastChat's per-category temperature and 1024 new
    tokens unless `generation` sets `temperature` or `max_new_tokens`) or `alpaca_eval` (805 instructions)."""
    scorers: list[ScorerSpec] = Field(min_length=1)
    """How the answers are scored; each scorer is one metric."""
    generation: GenerationSpec = GenerationSpec()
    """How the answers are generated."""
    limit: int | None = Field(None, ge=1)
    """Only the first N items (`wb eval --limit` overrides it)."""
    gold: str | None = None
    """Human-graded answers (JSONL: id, answer, score) the judge is checked against (Cohen's kappa); relative to the
    suite file."""
    system: str | None = None
    """A system prompt put first in each item's conversation (an item with its own system message keeps its own)."""
    fewshot: list[FewshotPair | ChatTurn] = []
    """Example turns put before each item (after the system prompt): `{user, assistant}` exchanges, or
    `{role, content}` messages. Recorded in the run's manifest with the rest of the task."""
    breakdown: list[str] = []
    """Metadata keys to break every metric down by, beside the items' tags: the row `METRIC[KEY=VALUE]` for each
    value of `metadata.KEY` among the items (values other than strings written as JSON)."""
    pass_at: list[Annotated[int, Field(ge=1)]] = []
    """k values of pass@k (needs generation.n >= k): for each metric, the unbiased estimator of Chen et al. 2021,
    1 - C(n-c, k) / C(n, k) per item (c: its answers scoring 1, full credit), averaged over items, as the metric
    `METRIC.pass@k`."""

    @model_validator(mode="after")
    def _sampling(self):
        if (self.data is None) == (self.benchmark is None):
            raise ValueError("give either 'data' (a JSONL file) or 'benchmark' (one of "
                             f"{', '.join(BENCHMARKS)}), not both or neither")
        if self.format == "bfcl" and self.data is None:
            raise ValueError("format: bfcl reads a BFCL question file: give it as 'data'")
        n = self.generation.n
        if n > 1 and self.benchmark == "mt_bench":
            raise ValueError(f"generation.n: {n}: MT-Bench answers each question once, turn by turn (n: 1)")
        if n > 1 and self.generation.temperature == 0:
            raise ValueError(f"generation.n: {n} answers per item need generation.temperature > 0 (greedy decoding "
                             "gives n identical answers)")
        too_big = [k for k in self.pass_at if k > n]
        if too_big:
            raise ValueError(f"pass_at: k={too_big[0]} is larger than generation.n={n} (answers per item)")
        if n > 1 and any(s.type in JUDGE_SCORERS for s in self.scorers):
            raise ValueError("generation.n: judge scorers grade one answer per item; n must be 1")
        return self


class HarnessSpec(Strict):
    """One lm-evaluation-harness run: its tasks, read from the local mirror (`--data-dir`), scored by lm-eval."""

    tasks: list[str] = Field(min_length=1)
    """lm-eval task names (mmlu, mmlu_anatomy, gsm8k, ...) or groups."""
    limit: int | float | None = None
    """lm-eval's: a count of items per task, or a fraction of each below 1."""
    num_fewshot: int | None = Field(None, ge=0)
    """Few-shot examples per prompt; null keeps each task's own default."""
    batch_size: int = Field(8, ge=1)
    """lm-eval's batch size."""
    apply_chat_template: bool = False
    """Render lm-eval's prompts with the checkpoint's chat template (lm-eval's --apply_chat_template). A reasoning
    model's generations are then scored on their final answer, the `<think>` part stripped (docs/benchmarks.md)."""
    gen_kwargs: FreeForm = {}
    """Generation settings for lm-eval's generative tasks (e.g. `{max_gen_toks: 256}`)."""
    include_path: str | None = None
    """A folder of the user's lm-eval task YAML, relative to the suite file."""

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value):
        if value is not None and value <= 0:
            raise ValueError(f"{value} must be above 0 (items per task, or a fraction of each task below 1)")
        return value


class GateSpec(Strict):
    """One release gate on a metric; the decision rules are in workbench.gate and docs/ci-gate.md."""

    task: str
    """The task (a suite task's name, or an lm-eval task) the metric belongs to."""
    metric: str
    """The metric: a scorer's label, or an lm-eval metric (`acc`, `exact_match,strict-match`)."""
    name: str | None = None
    """The gate's name in reports (default: task/metric)."""
    min_value: float | None = None
    """Fail when the metric is below this."""
    max_value: float | None = None
    """Fail when the metric is above this (for metrics where lower is better)."""
    max_drop: float | None = Field(None, ge=0)
    """Fail when the metric is worse than the baseline's by more than this (absolute, in the metric's units) and
    the drop is significant."""
    significance: float = Field(0.05, gt=0, lt=1)
    """The level of max_drop's paired test."""
    test: Literal["auto", "mcnemar", "bootstrap"] = "auto"
    """max_drop's paired test: McNemar for pass/fail metrics, a paired bootstrap otherwise (auto chooses)."""
    higher_is_better: bool | None = None
    """Overrides the run's own record of the metric's direction (lm-eval leaves some unset)."""
    tag: str | None = None
    """Gate the metric over the items carrying this tag only (the row `METRIC[tag=TAG]`)."""
    min_labels: int | None = Field(None, ge=1)
    """A gate on a judge scorer's metric: the human labels (`wb review`, docs/review.md) the suite task needs before
    the judge may gate (default: the gates file's `min_labels`, else 50); fewer refuse the eval before any model
    loads, unless `wb eval --allow-uncalibrated-judge`."""
    min_kappa: float | None = Field(None, ge=-1, le=1)
    """A gate on a judge scorer's metric: the lowest lower bound of the 95% bootstrap CI of the judge's Cohen's kappa
    against the human labels' majority the judge needs to gate (default: the gates file's `min_kappa`, else 0.6)."""

    @model_validator(mode="after")
    def _has_a_rule(self):
        if self.min_value is None and self.max_value is None and self.max_drop is None:
            raise ValueError("a gate needs min_value, max_value or max_drop")
        return self

    @property
    def row_metric(self) -> str:
        """The name of the metric row the gate reads (the per-tag row with `tag`)."""
        return metric_name(self.metric, TAG, self.tag) if self.tag is not None else self.metric

    @property
    def label(self) -> str:
        return self.name or f"{self.task}/{self.row_metric}"


class JudgeSpec(Strict):
    """Where the LLM judge runs. Without base_url wb starts llama.cpp's server on loopback for `model`."""

    base_url: str | None = None
    """An OpenAI-compatible endpoint, e.g. https://api.openai.com/v1."""
    model: str = "default"
    """Local: 'default' or a .gguf path; external: the endpoint's model name."""
    api_key_env: str | None = None
    """The NAME of the environment variable holding the key, never the key."""
    response_format: Literal["auto", "json_schema", "json_object", "grammar", "none"] = "auto"
    """How the verdict's JSON is enforced; auto picks what the endpoint supports."""
    concurrency: int = Field(4, ge=1)
    """Judge requests in flight at once."""
    timeout_s: float = Field(120.0, gt=0)
    """Seconds per request before it counts as failed (and is retried)."""
    retries: int = Field(3, ge=0)
    """Retries of a failed request (timeouts, 429 and 5xx)."""
    backoff_s: float = Field(1.0, ge=0)
    """The first retry's wait; each next one doubles it."""
    max_tokens: int = Field(256, ge=16)
    """The longest verdict, in tokens."""
    n_ctx: int = Field(4096, ge=512)
    """The local judge server's context length (local only)."""


class SuiteConfig(Strict):
    """An eval suite."""

    name: str
    """The suite's name: runs, compare and the dashboard refer to it."""
    description: str = ""
    """What the suite checks, for people."""
    tasks: list[TaskSpec] = []
    """Tasks scored on the checkpoint's own answers."""
    harness: list[HarnessSpec] = []
    """lm-eval runs; several entries when tasks need different settings (limit, shots, generation length)."""
    gates: list[GateSpec] = []
    """Release gates, checked at the end of `wb eval` (exit 1 when one fails)."""
    judge: JudgeSpec = JudgeSpec()
    """Where the judge of judge scorers runs."""


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

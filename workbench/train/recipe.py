"""One training recipe, run: a PEFT adapter trained by TRL's trainer for the recipe's method (sft, dpo, orpo, kto,
grpo), on a full-precision or bitsandbytes-quantized base, saved with its lineage.

Everything a recipe names is checked in prepare_training, before a run is opened or a model loads; the small
modules beside this one each own one part: rows (data per method), peft_spec (PEFT configs), methods (TRL
configs and trainers), reward (GRPO's scorer), workbench.checkpoints.quantization (bitsandbytes)."""

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.chat.named import NAMES, ChosenTemplate, choose_template, template_sha256
from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.checkpoints.resolve import portable_base
from workbench.config import ScorerSpec, TrainConfig
from workbench.data.formats import FORMATS, Row
from workbench.data.records import sha256_file
from workbench.errors import BadInput, EnvironmentProblem
from workbench.store.files import staged_folder
from workbench.system.extras import available, peft_without_gptqmodel, require
from workbench.system.user_files import regular_file, resolved
from workbench.train.checkpoints import CheckpointPlan, plan_checkpoints, recipe_fingerprint
from workbench.train.divergence import divergence_callback
from workbench.train.loss_log import loss_log_callback, loss_rows
from workbench.train.rows import training_dataset


@dataclass
class TrainInputs:
    data_path: Path
    data_format: str
    rows: list[Row]
    examples: list[dict]  # rows in the shape the method's TRL trainer reads
    base: Checkpoint
    peft_config: object  # PEFT's config object, validated
    trainer_args: object  # the method's TRL config, validated (built again with the checkpoint plan to train)
    quantization: dict | None = None  # workbench.checkpoints.quantization.quantization_record
    reward: tuple[ScorerSpec, dict] | None = None  # GRPO: the scorer and where it comes from
    chat_template: ChosenTemplate | None = None  # the recipe's chat_template; None: the base's own template
    template_record: dict | None = None  # what the adapter's lineage keeps of the template rows are rendered with

    @property
    def peft_type(self) -> str:
        from workbench.train.peft_spec import peft_type_name

        return peft_type_name(self.peft_config)


@dataclass
class TrainingRows:
    data_path: Path
    data_format: str
    rows: list[Row]
    examples: list[dict]


def load_training_rows(cfg: TrainConfig, config_path: Path) -> TrainingRows:
    """The recipe's data, parsed and shaped for its method: the cheap check, made before any heavy import."""
    from workbench.train.rows import method_rows

    if cfg.data_format is not None and cfg.data_format not in FORMATS:
        raise BadInput(f"{config_path}: data_format: '{cfg.data_format}' (choose from {', '.join(FORMATS)})")
    data_path = regular_file(resolved(config_path.parent / cfg.train_data), "a JSONL file")
    return TrainingRows(data_path, *method_rows(cfg.method, data_path, cfg.data_format))


def prepare_training(cfg: TrainConfig, config_path: Path, loaded: TrainingRows | None = None) -> TrainInputs:
    """Everything a recipe names, checked before a run is opened or a model loads: data rows (in the format the
    method needs), base, PEFT config, TRL config, reward, quantization and optimizer."""
    from workbench.checkpoints.resolve import resolve_checked
    from workbench.train.methods import trainer_config
    from workbench.train.peft_spec import build_peft_config, check_targets, peft_type_name

    chosen = None
    if cfg.chat_template is not None:
        chosen = choose_template(cfg.chat_template, relative_to=config_path.parent,
                                 where=f"{config_path}: chat_template")
    loaded = loaded or load_training_rows(cfg, config_path)
    data_path, fmt, rows, examples = loaded.data_path, loaded.data_format, loaded.rows, loaded.examples
    reward = None
    if cfg.method == "grpo":
        from workbench.train.reward import check_references, load_reward_scorer

        reward = load_reward_scorer(cfg.reward, config_path)
        check_references(reward[0], examples, data_path, [r.line for r in rows])
    quantization = _check_quantization(cfg)
    _check_optimizer(cfg, config_path)
    try:
        base = resolve_checked(cfg.base)
    except BadInput as exc:
        raise BadInput(f"{config_path}: base: {exc}") from None
    if base.kind == "adapter" or base.format != "hf":
        raise BadInput(f"{config_path}: base: '{cfg.base}' must be an HF model folder or 'default', not a {base.kind}")
    template_record = chosen.record() if chosen else _base_template(base, cfg, config_path)
    if any(row.tools for row in rows):
        _check_tools_template(base, chosen, data_path, rows, config_path)
    peft_config = build_peft_config(cfg, config_path)
    check_targets(peft_config, base.path, config_path, "peft" if cfg.peft is not None else "lora")
    if cfg.training.loraplus_lr_ratio and peft_type_name(peft_config) != "lora":
        raise BadInput(f"{config_path}: training.loraplus_lr_ratio: LoRA+ sets LoRA's B matrices' learning rate; "
                       f"this recipe trains {peft_type_name(peft_config)}")
    torch = require("torch", "Training", "train")
    cuda = torch.cuda.is_available()
    if cfg.training.precision != "fp32" and not cuda:
        raise BadInput(f"{config_path}: training.precision: {cfg.training.precision} needs a GPU here; use fp32 on CPU")
    args = trainer_config(cfg, config_path, Path("trainer"), cuda=cuda)
    return TrainInputs(data_path, fmt, rows, examples, base, peft_config, args, quantization, reward, chosen,
                       template_record)


def _base_template(base: Checkpoint, cfg: TrainConfig, config_path: Path) -> dict:
    """The base's own chat template, as lineage records it; a base model without one is refused, naming the fix."""
    from workbench.runtimes.hf import read_chat_template

    template = read_chat_template(base)
    if not template:
        raise BadInput(f"{config_path}: base '{cfg.base}' has no chat template (a base model): choose the format "
                       f"rows are rendered in with `chat_template:` in the recipe ({', '.join(NAMES)}, or a .jinja "
                       "file)")
    return {"source": "base", "sha256": template_sha256(template)}


def _check_tools_template(base: Checkpoint, chosen: ChosenTemplate | None, data_path: Path, rows: list[Row],
                          config_path: Path) -> None:
    """Rows with tools train only through a template that renders them (TRL passes apply_chat_template tools=):
    the recipe's `chat_template:` when it names one, else the base's own."""
    from workbench.runtimes.hf import load_tokenizer
    from workbench.toolcalls.rows import check_renders_tools, tokenizer_render

    tokenizer = load_tokenizer(base)
    if chosen is not None:
        tokenizer.chat_template = chosen.text
    if tokenizer.chat_template:
        check_renders_tools(data_path, rows, tokenizer_render(tokenizer),
                            f"set `chat_template:` in {config_path} to a template that renders tools, e.g. qwen3")


def _check_quantization(cfg: TrainConfig) -> dict | None:
    if cfg.quantization is None:
        return None
    from workbench.checkpoints.quantization import quantization_record, require_bitsandbytes

    require_bitsandbytes(cfg.quantization)  # exit 4, naming the qlora extra
    return quantization_record(cfg.quantization, cfg.training.precision)


def _check_optimizer(cfg: TrainConfig, config_path: Path) -> None:
    t = cfg.training
    if "galore" in t.optim and not available("galore_torch"):
        raise EnvironmentProblem(f"{config_path}: training.optim: {t.optim} needs the galore-torch package "
                                 "(pip install galore-torch)")
    if "galore" in t.optim and not t.optim_target_modules:
        raise BadInput(f"{config_path}: training.optim_target_modules: GaLore needs the modules it projects")
    if t.loraplus_lr_ratio and t.optim != "adamw_torch":
        raise BadInput(f"{config_path}: training.loraplus_lr_ratio: LoRA+ builds its own AdamW; "
                       f"leave training.optim at adamw_torch (got {t.optim})")


def train_adapter(cfg: TrainConfig, config_path: Path, out_dir: Path, *, on_log=None,
                  inputs: TrainInputs | None = None, checkpoints: CheckpointPlan | None = None,
                  callbacks: list = (), report_to: list[str] = ()) -> tuple[Checkpoint, list[dict]]:
    """Train the recipe's adapter; returns its Checkpoint (lineage saved beside it) and the loss log.
    `checkpoints` (plan_checkpoints) says where resumable checkpoints go and which one to resume from;
    `callbacks` are extra TrainerCallbacks (evals during training, trackers), `report_to` transformers' loggers."""
    inputs = inputs or prepare_training(cfg, config_path)
    base = inputs.base
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"output folder '{out_dir}' is not empty")
    plan = checkpoints or plan_checkpoints(out_dir, training_fingerprint(cfg, inputs), cfg.training.save_steps,
                                           resume=False)

    torch = require("torch", "Training", "train")
    transformers = require("transformers", "Training", "train")
    peft = require("peft", "Training", "train")
    from workbench.train.methods import METHODS, build_trainer, trainer_config

    t = cfg.training
    torch.manual_seed(t.seed)
    cuda = torch.cuda.is_available()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if inputs.chat_template is not None:  # rows render with it, and save_pretrained writes it as chat_template.jinja
        tokenizer.chat_template = inputs.chat_template.text
    if inputs.quantization:
        from workbench.checkpoints.quantization import load_quantized

        model = load_quantized(base.path, inputs.quantization, "cuda" if cuda else "cpu")
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=t.gradient_checkpointing)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base.path), dtype=torch.float32)
    with peft_without_gptqmodel():
        model = peft.get_peft_model(model, inputs.peft_config)
    optimizers = (None, None)
    if t.loraplus_lr_ratio:
        loraplus = require("peft.optimizers", "LoRA+", "train")
        optimizers = (loraplus.create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=t.learning_rate, loraplus_lr_ratio=t.loraplus_lr_ratio), None)
    dataset = training_dataset(inputs.examples)
    saving = plan.trainer_args()  # the Trainer's checkpoints go beside the output (train/checkpoints.py)
    args = trainer_config(cfg, config_path, Path(saving["output_dir"]), cuda=cuda, saving=saving,
                          report_to=report_to)
    # The divergence check comes first: a step whose weights are not finite stops before any other callback or
    # the Trainer's own save sees it.
    callbacks = [divergence_callback(transformers, torch, config_path), loss_log_callback(transformers, on_log),
                 plan.callback(transformers), *callbacks]
    if inputs.peft_type == "adalora":
        callbacks.append(_adalora_allocator(transformers))
    try:
        with staged_folder(out_dir) as adapter_dir:
            plan.start()
            reward_funcs = None
            if inputs.reward:
                from workbench.train.reward import reward_function

                reward_funcs = [reward_function(inputs.reward[0])]
            trainer = build_trainer(cfg.method, model=model, args=args, dataset=dataset, tokenizer=tokenizer,
                                    callbacks=callbacks, optimizers=optimizers, reward_funcs=reward_funcs, cuda=cuda)
            result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
            log = loss_rows(trainer.state.log_history)
            trainer.model.save_pretrained(str(adapter_dir))
            tokenizer.save_pretrained(str(adapter_dir))
            base_ref = portable_base(base, cfg.base)
            if base.hub:  # PEFT wrote the snapshot's path in the cache; other tools find the hub id anywhere
                _set_adapter_base(adapter_dir, base_ref)
            from workbench.train.peft_spec import peft_fields

            parent = {"base": base.name, "base_path": str(base.path), "base_sha": base.sha,
                      **({"base_hub": base.hub} if base.hub else {}),
                      "method": cfg.method, "trainer": f"trl.{METHODS[cfg.method].trainer}",
                      "peft_type": inputs.peft_type, "peft": peft_fields(cfg),
                      **({"quantization": inputs.quantization} if inputs.quantization else {}),
                      **({"reward": inputs.reward[1]} if inputs.reward else {}),
                      "chat_template": inputs.template_record,
                      "train_data": str(inputs.data_path), "train_data_sha": sha256_file(inputs.data_path),
                      "data_format": inputs.data_format, "n_train": len(inputs.rows),
                      "n_examples": len(inputs.examples), "recipe": json.loads(cfg.model_dump_json())}
            ckpt = Checkpoint(
                path=adapter_dir, name=cfg.name, kind="adapter", format="peft", base=base_ref,
                sha=weights_sha(adapter_dir), parent=parent,
                extra={"train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
                       "final_loss": log[-1]["loss"] if log else None, "steps_trained": trainer.state.global_step},
            )
            ckpt.save_meta()
        plan.finish()
    except BaseException:
        plan.abandon()
        raise
    ckpt.path = out_dir.resolve()
    return ckpt, log


def training_fingerprint(cfg: TrainConfig, inputs: TrainInputs) -> dict:
    """What a resumed run must share with the checkpoints it continues."""
    return recipe_fingerprint(json.loads(cfg.model_dump_json()), sha256_file(inputs.data_path), inputs.base.sha)


def _adalora_allocator(transformers):
    """AdaLoRA reallocates ranks from the gradients of each step: PEFT leaves the call to the training loop."""

    class AdaLoraAllocate(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            model.base_model.update_and_allocate(state.global_step)

    return AdaLoraAllocate()


def _set_adapter_base(adapter_dir: Path, base_ref: str) -> None:
    config = adapter_dir / "adapter_config.json"
    data = json.loads(config.read_text())
    data["base_model_name_or_path"] = base_ref.split("@", 1)[0]
    if "@" in base_ref:
        data["revision"] = base_ref.split("@", 1)[1]
    config.write_text(json.dumps(data, indent=2) + "\n")

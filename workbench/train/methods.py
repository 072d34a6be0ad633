"""method -> TRL's config and trainer. wb fills the settings every method shares from `training:`; a recipe's
`method_args` sets any other field of the method's TRL config (DPOConfig.beta, GRPOConfig.num_generations, ...)."""

import dataclasses
import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path

from workbench.config import TrainConfig
from workbench.errors import BadInput
from workbench.system.extras import require


@dataclass(frozen=True)
class Method:
    module: str
    config: str
    trainer: str


METHODS = {
    "sft": Method("trl", "SFTConfig", "SFTTrainer"),
    "dpo": Method("trl", "DPOConfig", "DPOTrainer"),
    "orpo": Method("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),  # TRL 1.x keeps ORPO in experimental
    "kto": Method("trl", "KTOConfig", "KTOTrainer"),
    "grpo": Method("trl", "GRPOConfig", "GRPOTrainer"),
}
# Fields wb sets itself; a recipe changes them through `training:` (or not at all).
SET_BY_WB = {"output_dir", "use_cpu", "report_to", "save_strategy", "max_steps", "learning_rate", "seed", "data_seed",
             "per_device_train_batch_size", "gradient_accumulation_steps", "warmup_steps", "lr_scheduler_type",
             "logging_steps", "bf16", "fp16", "gradient_checkpointing", "optim", "optim_target_modules",
             "dataloader_num_workers", "disable_tqdm"}


def _module(method: str):
    spec = METHODS[method]
    require("trl", "Training", "train")
    return require(spec.module, f"Method {method}", "train")


def trainer_config(cfg: TrainConfig, where: Path, output_dir: Path, *, cuda: bool, saving: dict | None = None,
                   report_to: list[str] = ()):
    """The method's TRL config, built before the model loads so a bad method_args field or value fails first, and
    again when training starts with where checkpoints go (`saving`: CheckpointPlan.trainer_args) and the loggers."""
    spec = METHODS[cfg.method]
    config_cls = getattr(_module(cfg.method), spec.config)
    fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    for key in cfg.method_args:
        if key in SET_BY_WB:
            raise BadInput(f"{where}: method_args.{key}: set it under 'training:' (wb sets {key} from there)")
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadInput(f"{where}: method_args.{key}: not a field of TRL's {spec.config}{hint}")
    t = cfg.training
    shared = dict(
        output_dir=str(output_dir), max_steps=t.max_steps, learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=max(0, round(t.warmup_ratio * t.max_steps)), lr_scheduler_type=t.lr_scheduler_type,
        logging_steps=t.logging_steps, seed=t.seed, data_seed=t.seed, save_strategy="no", report_to=list(report_to),
        use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=False, optim=t.optim,
        optim_target_modules=t.optim_target_modules,
        # TRL defaults to bf16 autocast and gradient checkpointing: on a CPU without bf16 units that is an
        # order of magnitude slower, and a small model needs no activation savings.
        bf16=t.precision == "bf16", fp16=t.precision == "fp16", gradient_checkpointing=t.gradient_checkpointing,
    )
    shared.update(saving or {})
    if "max_length" in fields:  # GRPO bounds its completions instead (max_completion_length)
        shared["max_length"] = t.max_length
    if cfg.method == "sft":
        shared["completion_only_loss"] = True
    if cfg.method == "orpo":  # its collator needs the raw columns; TRL sets this itself, with a warning
        shared["remove_unused_columns"] = False
    if cfg.method == "grpo":  # TRL's defaults (8 completions of up to 512 tokens) take minutes a step on a CPU
        shared.update(num_generations=min(4, t.batch_size * t.gradient_accumulation_steps),
                      max_completion_length=64)
    try:
        with warnings.catch_warnings():  # transformers' deprecation of TRL's own gradient_checkpointing field
            warnings.simplefilter("ignore", FutureWarning)
            return config_cls(**{**shared, **cfg.method_args})
    except (TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise BadInput(f"{where}: method_args ({spec.config}): {message}") from None


def build_trainer(method: str, *, model, args, dataset, tokenizer, callbacks, optimizers, reward_funcs, cuda: bool):
    module = _module(method)
    trainer_cls = getattr(module, METHODS[method].trainer)
    if method == "sft" and not cuda:
        trainer_cls = _cpu_sft_trainer(trainer_cls)
    kwargs = dict(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks,
                  optimizers=optimizers)
    if method == "grpo":
        kwargs["reward_funcs"] = reward_funcs
    return trainer_cls(**kwargs)


def _cpu_sft_trainer(sft_trainer):
    """SFTTrainer with the plain loss: TRL's fused LM-head loss is built for Triton, and its torch fallback
    made a CPU step about 1.6x slower here (8x130 tokens: 20 s vs 12.7 s). The loss is the same
    token-mean cross-entropy on the completion; only TRL's entropy/accuracy logging is lost."""
    transformers = require("transformers", "Training", "train")

    class CpuSFTTrainer(sft_trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "labels", "position_ids")}
            return transformers.Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return CpuSFTTrainer

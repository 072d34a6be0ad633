"""LoRA SFT with TRL's SFTTrainer on conversational prompt/completion data (loss on the completion only)."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from workbench.checkpoint import Checkpoint, weights_sha
from workbench.resolve import portable_base
from workbench.config import TrainConfig
from workbench.data.records import as_sft_rows, load_chat_items, sha256_file
from workbench.store.files import publish_dir, staging_dir
from workbench.train.checkpoints import CheckpointPlan, plan_checkpoints, recipe_fingerprint
from workbench.train.loss_log import loss_log_callback, loss_rows
from workbench.errors import BadInput
from workbench.extras import require


@dataclass
class SftInputs:
    data_path: Path
    items: list[dict]
    base: Checkpoint


def prepare_sft(cfg: TrainConfig, config_path: Path) -> SftInputs:
    """Everything a recipe names, checked before a run is opened or a model loads: its data rows and its base."""
    from workbench.checkpoint_checks import resolve_checked

    data_path = (config_path.parent / cfg.train_data).resolve()
    items = load_chat_items(data_path)
    try:
        base = resolve_checked(cfg.base)
    except BadInput as exc:
        raise BadInput(f"{config_path}: base: {exc}") from None
    if base.kind == "adapter" or base.format != "hf":
        raise BadInput(f"{config_path}: base: '{cfg.base}' must be an HF model folder or 'default', not a {base.kind}")
    return SftInputs(data_path, items, base)


def train_sft(cfg: TrainConfig, config_path: Path, out_dir: Path, *, on_log=None,
              inputs: SftInputs | None = None, checkpoints: CheckpointPlan | None = None,
              callbacks: list = (), report_to: list[str] = ()) -> tuple[Checkpoint, list[dict]]:
    """Train a LoRA adapter; returns its Checkpoint (lineage saved beside it) and the loss log.
    `checkpoints` (plan_checkpoints) says where resumable checkpoints go and which one to resume from;
    `callbacks` are extra TrainerCallbacks (evals during training, trackers), `report_to` transformers' loggers."""
    inputs = inputs or prepare_sft(cfg, config_path)
    data_path, items, base = inputs.data_path, inputs.items, inputs.base
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"output folder '{out_dir}' is not empty")
    plan = checkpoints or plan_checkpoints(out_dir, sft_fingerprint(cfg, inputs), cfg.training.save_steps,
                                           resume=False)

    torch = require("torch", "Training", "train")
    transformers = require("transformers", "Training", "train")
    peft = require("peft", "Training", "train")
    trl = require("trl", "Training", "train")
    datasets = require("datasets", "Training", "train")

    torch.manual_seed(cfg.training.seed)
    cuda = torch.cuda.is_available()
    if cfg.training.precision != "fp32" and not cuda:
        raise BadInput(f"{config_path}: training.precision: {cfg.training.precision} needs a GPU here; use fp32 on CPU")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(base.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base.path), dtype=torch.float32)
    lora = peft.LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, use_dora=cfg.lora.use_dora, use_rslora=cfg.lora.use_rslora,
        task_type="CAUSAL_LM",
    )
    dataset = datasets.Dataset.from_list(as_sft_rows(items))
    work = staging_dir(out_dir)
    t = cfg.training
    args = trl.SFTConfig(
        max_steps=t.max_steps, learning_rate=t.learning_rate, per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps, max_length=t.max_length,
        warmup_steps=max(0, round(t.warmup_ratio * t.max_steps)), lr_scheduler_type=t.lr_scheduler_type,
        logging_steps=t.logging_steps, seed=t.seed, data_seed=t.seed, completion_only_loss=True,
        report_to=list(report_to), use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=False,
        # TRL defaults to bf16 autocast and gradient checkpointing: on a CPU without bf16 units that is an
        # order of magnitude slower, and a small model needs no activation savings.
        bf16=t.precision == "bf16", fp16=t.precision == "fp16", gradient_checkpointing=t.gradient_checkpointing,
        **plan.trainer_args(),
    )
    try:
        plan.start()
        trainer_cls = trl.SFTTrainer if cuda else _cpu_trainer_class(trl, transformers)
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 peft_config=lora, callbacks=[loss_log_callback(transformers, on_log),
                                                              plan.callback(transformers), *callbacks])
        result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
        log = loss_rows(trainer.state.log_history)
        adapter_dir = work / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        base_ref = portable_base(base, cfg.base)
        if base.hub:  # PEFT wrote the snapshot's path in the cache; other tools find the hub id anywhere
            _set_adapter_base(adapter_dir, base_ref)
        ckpt = Checkpoint(
            path=adapter_dir, name=cfg.name, kind="adapter", format="peft", base=base_ref,
            sha=weights_sha(adapter_dir),
            parent={"base": base.name, "base_path": str(base.path), "base_sha": base.sha, "method": "sft-lora",
                    **({"base_hub": base.hub} if base.hub else {}),
                    "train_data": str(data_path), "train_data_sha": sha256_file(data_path), "n_train": len(items),
                    "recipe": json.loads(cfg.model_dump_json())},
            extra={"train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
                   "final_loss": log[-1]["loss"] if log else None, "steps_trained": trainer.state.global_step},
        )
        ckpt.save_meta()
        publish_dir(adapter_dir, out_dir)
        plan.finish()
    except BaseException:
        plan.abandon()
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ckpt.path = out_dir.resolve()
    return ckpt, log


def sft_fingerprint(cfg: TrainConfig, inputs: SftInputs) -> dict:
    """What a resumed run must share with the checkpoints it continues."""
    return recipe_fingerprint(json.loads(cfg.model_dump_json()), sha256_file(inputs.data_path), inputs.base.sha)


def _set_adapter_base(adapter_dir: Path, base_ref: str) -> None:
    config = adapter_dir / "adapter_config.json"
    data = json.loads(config.read_text())
    data["base_model_name_or_path"] = base_ref.split("@", 1)[0]
    if "@" in base_ref:
        data["revision"] = base_ref.split("@", 1)[1]
    config.write_text(json.dumps(data, indent=2) + "\n")


def _cpu_trainer_class(trl, transformers):
    """SFTTrainer with the plain loss: TRL's fused LM-head loss is built for Triton, and its torch fallback
    made a CPU step about 1.6x slower here (8x130 tokens: 20 s vs 12.7 s). The loss is the same
    token-mean cross-entropy on the completion; only TRL's entropy/accuracy logging is lost."""

    class CpuSFTTrainer(trl.SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "labels", "position_ids")}
            return transformers.Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return CpuSFTTrainer

"""A recipe's `peft:` mapping checked against PEFT's own config classes, before any model loads.

`type` picks the class (lora, adalora, ia3, vera, oft, boft, loha, lokr, ... : any PEFT type); every other key
must be a field of that class. A few LoRA variants are named types for convenience: dora, rslora, pissa, olora,
loftq (LoRA with use_dora, use_rslora or that init_lora_weights). The older `lora:` key is shorthand for
`peft: {type: lora, ...}`, with wb's short names (alpha, dropout) for PEFT's (lora_alpha, lora_dropout).
"""

import dataclasses
import difflib
import re
import typing
from pathlib import Path

from workbench.config import LoraSpec, TrainConfig
from workbench.errors import BadInput
from workbench.system.extras import require

LORA_VARIANTS = {
    "dora": {"use_dora": True},
    "rslora": {"use_rslora": True},
    "pissa": {"init_lora_weights": "pissa"},
    "olora": {"init_lora_weights": "olora"},
    "loftq": {"init_lora_weights": "loftq"},
}
SET_BY_WB = {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode"}


def peft_fields(cfg: TrainConfig) -> dict:
    """The recipe's PEFT settings as {"type", PEFT field: value}: `peft:` as given, or `lora:` translated."""
    if cfg.peft is not None:
        return dict(cfg.peft)
    lora = cfg.lora or LoraSpec()
    return {"type": "lora", "r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "target_modules": lora.target_modules, "use_dora": lora.use_dora, "use_rslora": lora.use_rslora}


def build_peft_config(cfg: TrainConfig, where: Path):
    """PEFT's config object for the recipe, or one BadInput naming the bad key."""
    peft = require("peft", "Training", "train")
    fields = peft_fields(cfg)
    kind = fields.pop("type", None)
    if not isinstance(kind, str):
        raise BadInput(f"{where}: peft.type: missing (lora, dora, ia3, vera, adalora, oft, boft, ...)")
    fields = {**LORA_VARIANTS.get(kind.lower(), {}), **fields}
    peft_type = "LORA" if kind.lower() in LORA_VARIANTS else kind.upper()
    classes = {str(t.value if hasattr(t, "value") else t).upper(): cls
               for t, cls in peft.mapping.PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    cls = classes.get(peft_type)
    if cls is None:
        known = sorted(k.lower() for k in classes) + sorted(LORA_VARIANTS)
        close = difflib.get_close_matches(kind.lower(), known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else f" (PEFT has {', '.join(known)})"
        raise BadInput(f"{where}: peft.type: '{kind}' is not a PEFT method{hint}")
    allowed = {f.name for f in dataclasses.fields(cls) if f.init} - SET_BY_WB
    for key in fields:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadInput(f"{where}: peft.{key}: not a field of PEFT's {cls.__name__}{hint}")
    fields = _typed(cls, fields, where)
    if peft_type == "ADALORA":  # AdaLoRA's rank schedule spans the run; PEFT requires its length
        fields.setdefault("total_step", cfg.training.max_steps)
    try:
        return cls(task_type="CAUSAL_LM", **fields)
    except (TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        raise BadInput(f"{where}: peft ({cls.__name__}): {message}") from None


def _typed(cls, fields: dict, where: Path) -> dict:
    """Each value checked against its field's annotation in PEFT's dataclass (pydantic validates the annotation):
    PEFT itself does not check types, so `r: many` would fail deep inside get_peft_model, after the run opened."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in fields.items():
        try:
            out[key] = TypeAdapter(hints[key]).validate_python(value)
        except ValidationError as exc:
            raise BadInput(f"{where}: peft.{key}: {value!r}: {exc.errors()[0]['msg']} ({cls.__name__})") from None
    return out


def check_targets(peft_config, base_path: Path, where: Path, key: str) -> None:
    """Every module name the recipe targets names a module of the base, checked on an empty (meta-device) copy of
    the model before its weights load; PEFT's own check comes only in get_peft_model, after the run opened."""
    targets = getattr(peft_config, "target_modules", None)
    if targets is None or targets == "all-linear":
        return
    from workbench.checkpoints.checks import meta_model

    torch = require("torch", "Training", "train")
    model = meta_model(base_path)
    names = [name for name, _ in model.named_modules() if name]
    if isinstance(targets, str):  # PEFT: a regex the whole module name must match
        missing = [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    else:  # PEFT: a module whose name is the entry or ends with "." + the entry
        missing = [t for t in sorted(targets) if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise BadInput(f"{where}: {key}.target_modules: {', '.join(map(repr, missing))} names no module of the base "
                       f"(its linear layers: {', '.join(linear)})")


def peft_type_name(config) -> str:
    """'lora', 'ia3', ...: a PEFT config's type, as lineage and messages name it."""
    kind = config.peft_type
    return str(getattr(kind, "value", kind)).lower()

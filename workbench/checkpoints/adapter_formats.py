"""Which trainer's adapter a folder holds, read from its file names, its config and its weights' key names (no
weights load, no torch for the safetensors formats).

Three formats:
- peft: `adapter_config.json` with PEFT's `peft_type`, weights in `adapter_model.safetensors` (or `.bin`). TRL,
  Unsloth, Axolotl, LLaMA-Factory, recent torchtune and wb itself write it; which trainer did is a hint only
  (the model card's tags, files a trainer leaves beside the adapter, the base's name).
- mlx: MLX-LM's `adapters.safetensors` (keys `model.layers.N.self_attn.q_proj.lora_a`, A as (in, r), B as (r, out))
  and its `adapter_config.json` (the training arguments: `lora_parameters` {rank, scale, dropout, keys},
  `num_layers`, `fine_tune_type`, `model`).
- torchtune: `adapter_model.pt` / `adapter_N.pt` with torchtune's key names (`layers.0.attn.q_proj.lora_a.weight`).

mlx and torchtune adapters are converted to PEFT by `wb import-adapter` (workbench.merge.adapter_import). A folder whose
format cannot be told is a one-line BadInput naming what is missing, never a guess.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput

CONFIG = "adapter_config.json"
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MLX_WEIGHTS = "adapters.safetensors"
TORCHTUNE_WEIGHTS = re.compile(r"^adapter_(model|\d+)\.pt$")
TORCHTUNE_KEY = re.compile(r"^(layers\.\d+\.(attn|mlp)\.\w+|output)\.lora_[ab]\.weight$")
MLX_KEY = re.compile(r"\.lora_[ab]$")
FORMAT_NAMES = {"peft": "PEFT", "mlx": "MLX-LM", "torchtune": "torchtune"}

# (trainer, words in the model card that name it); the card's tags are what each trainer writes there
_CARD_WORDS = (("unsloth", ("unsloth",)), ("axolotl", ("axolotl",)),
               ("llama-factory", ("llama-factory", "llamafactory", "llama_factory")), ("trl", ("trl",)))
_LLAMA_FACTORY_FILES = ("trainer_log.jsonl", "llamaboard_config.yaml", "training_args.yaml")


@dataclass
class AdapterFormat:
    format: str  # "peft" | "mlx" | "torchtune"
    path: Path
    weights: Path
    config: dict
    base_name: str | None  # the base the adapter's files name, as written there
    trainer: str | None = None  # best guess: "trl", "unsloth", "axolotl", "llama-factory", "torchtune", "mlx-lm", "wb"
    reasons: list[str] = field(default_factory=list)  # why this format, and why this trainer

    @property
    def label(self) -> str:
        return FORMAT_NAMES[self.format]

    def to_dict(self) -> dict:
        return {"format": self.format, "trainer": self.trainer, "weights": self.weights.name,
                "base_name": self.base_name, "reasons": self.reasons}


def is_adapter_folder(path: Path) -> bool:
    """Whether a folder looks like an adapter of any format (then detect() tells which, or why it cannot)."""
    return path.is_dir() and ((path / CONFIG).exists() or (path / MLX_WEIGHTS).exists()
                              or any(TORCHTUNE_WEIGHTS.match(p.name) for p in path.iterdir()))


def detect(path: Path) -> AdapterFormat:
    """The adapter format of a folder, or a BadInput naming what is missing or contradictory."""
    path = Path(path)
    config = _read_config(path)
    if (path / MLX_WEIGHTS).exists() or "lora_parameters" in config:
        return _mlx(path, config)
    if "peft_type" in config and any((path / n).is_file() for n in PEFT_WEIGHTS):
        return _peft(path, config)
    torchtune = _torchtune_weights(path)
    if torchtune is not None:  # torchtune's own adapter_config.json is PEFT-shaped: its weights decide
        return _torchtune(path, config, torchtune)
    if "peft_type" in config:
        return _peft(path, config)  # names the missing weights
    if config:
        raise BadInput(f"{path / CONFIG}: neither PEFT's (no 'peft_type') nor MLX-LM's (no 'lora_parameters'), and "
                       "no torchtune adapter_model.pt beside it: cannot tell which trainer wrote this adapter")
    raise BadInput(f"'{path}': no {CONFIG}, {MLX_WEIGHTS} or torchtune adapter_model.pt: not an adapter folder")


def import_hint(fmt: AdapterFormat) -> str:
    """The one-line error for a foreign-format adapter given where a PEFT one is needed."""
    return (f"adapter '{fmt.path}' is an {fmt.label} adapter ({fmt.weights.name}); wb merges and evaluates PEFT "
            f"adapters: convert it first with `wb import-adapter {fmt.path} -o DIR` (add --base BASE when its "
            "base is elsewhere), then use DIR")


def _read_config(path: Path) -> dict:
    from workbench.store.files import read_json_object

    file = path / CONFIG
    return read_json_object(file) if file.exists() else {}


def _peft(path: Path, config: dict) -> AdapterFormat:
    weights = next((path / n for n in PEFT_WEIGHTS if (path / n).is_file()), None)
    if weights is None:
        raise BadInput(f"adapter '{path}': {CONFIG} is PEFT's, but neither {' nor '.join(PEFT_WEIGHTS)} is there")
    fmt = AdapterFormat("peft", path, weights, config, config.get("base_model_name_or_path"),
                        reasons=[f"{CONFIG} has peft_type {config.get('peft_type')!r}", f"weights in {weights.name}"])
    hints = _trainer_hints(path, fmt.base_name)
    if hints:
        fmt.trainer = hints[0][0]
        fmt.reasons += [f"trainer {t}: {why}" for t, why in hints]
    return fmt


def _trainer_hints(path: Path, base_name: str | None) -> list[tuple[str, str]]:
    hints = []
    if (path / "wb_checkpoint.json").exists():
        hints.append(("wb", "wb_checkpoint.json"))
    card = path / "README.md"
    text = card.read_text(encoding="utf-8", errors="replace").lower() if card.is_file() else ""
    for trainer, words in _CARD_WORDS:
        word = next((w for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", text)), None)
        if word:
            hints.append((trainer, f"README.md names '{word}'"))
    for name in _LLAMA_FACTORY_FILES:
        if (path / name).exists():
            hints.append(("llama-factory", f"{name} (LLaMA-Factory's training log/arguments)"))
            break
    if base_name and (base_name.startswith("unsloth/") or base_name.lower().endswith("bnb-4bit")):
        hints.append(("unsloth", f"the base '{base_name}' is an Unsloth hub repo"))
    if _torchtune_weights(path) is not None:
        hints.append(("torchtune", "adapter_model.pt with torchtune key names beside the PEFT files"))
    seen: set[str] = set()
    return [(t, why) for t, why in hints if not (t in seen or seen.add(t))]


def _mlx(path: Path, config: dict) -> AdapterFormat:
    weights = path / MLX_WEIGHTS
    if not weights.is_file():
        raise BadInput(f"adapter '{path}': {CONFIG} is MLX-LM's (lora_parameters), but {MLX_WEIGHTS} is not there")
    if "lora_parameters" not in config:
        raise BadInput(f"adapter '{path}': {MLX_WEIGHTS} is MLX-LM's, but {CONFIG} "
                       f"{'has no lora_parameters' if config else 'is missing'}: its LoRA scale is unknown")
    kind = config.get("fine_tune_type", "lora")
    if kind != "lora":
        raise BadInput(f"adapter '{path}': MLX-LM fine_tune_type '{kind}' ({CONFIG}); only 'lora' adapters convert "
                       "to PEFT")
    from workbench.checkpoints.safetensors_files import read_header

    keys = list(read_header(weights).entries)
    odd = next((k for k in keys if not MLX_KEY.search(k)), None)
    if odd or not keys:
        raise BadInput(f"adapter '{path}': {MLX_WEIGHTS} has "
                       f"{f'a weight that is not an MLX LoRA matrix ({odd!r})' if odd else 'no weights'}")
    return AdapterFormat("mlx", path, weights, config, config.get("model"), trainer="mlx-lm",
                         reasons=[f"{MLX_WEIGHTS} with lora_a/lora_b keys", f"{CONFIG} has lora_parameters"])


def _torchtune_weights(path: Path) -> Path | None:
    """The torchtune-format adapter file in a folder (its keys read with torch's safe loader), or None."""
    candidates = sorted(p for p in path.iterdir() if TORCHTUNE_WEIGHTS.match(p.name)) if path.is_dir() else []
    if not candidates:
        return None
    weights = max(candidates, key=lambda p: (p.name == "adapter_model.pt", p.stat().st_mtime_ns))
    keys = list(load_torchtune_state(weights))
    return weights if keys and all(TORCHTUNE_KEY.match(k) for k in keys) else None


def load_torchtune_state(weights: Path) -> dict:
    from workbench.system.extras import require

    torch = require("torch", "Reading a torchtune adapter", "train")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle, zip and unsafe-global errors all mean: not a tensor file we can read
        raise BadInput(f"{weights}: not a torch state dict torch.load(weights_only=True) reads ({type(exc).__name__})"
                       ) from None
    if not isinstance(state, dict):
        raise BadInput(f"{weights}: expected a state dict of tensors, found {type(state).__name__}")
    return state


def _torchtune(path: Path, config: dict, weights: Path) -> AdapterFormat:
    return AdapterFormat("torchtune", path, weights, config, config.get("base_model_name_or_path"),
                         trainer="torchtune", reasons=[f"{weights.name} with torchtune key names"])

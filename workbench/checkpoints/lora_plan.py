"""What a LoRA merge will change, read from adapter_config.json and the safetensors headers alone (no weights).

The plan names, for every base tensor the adapter touches, how: a LoRA delta (scale * B @ A, PEFT's semantics),
a LoRA bias, or a whole tensor that replaces the base's (modules_to_save, a saved embedding base layer). Building
it checks that the adapter fits the base (every lora_A/lora_B shape against the base tensor's, from the shard
headers), so an adapter for another base is refused before any weights load. What the streaming merge does not
implement (DoRA, LoRA variants, other PEFT types, ...) is listed in `unsupported`; the in-memory merge (PEFT's
merge_and_unload) handles those.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from workbench.checkpoints.adapter_vocab import copy_target, is_original_copy, resized_rows
from workbench.checkpoints.checkpoint import Checkpoint, require_base
from workbench.checkpoints.safetensors_files import SafetensorsHeader, TensorEntry, read_header
from workbench.errors import BadInput

ADAPTER_PREFIX = "base_model.model."
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# adapter_config.json keys whose LoRA variants merge differently from W + scale * B @ A
_VARIANT_KEYS = ("use_dora", "alora_invocation_tokens", "arrow_config", "use_bdlora", "velora_config",
                 "monteclora_config", "kasa_config", "use_qalora", "layer_replication", "target_parameters",
                 "trainable_token_indices", "megatron_config")


_INPUT_EMBEDDINGS = ("embed_tokens.weight", "wte.weight", "embed_in.weight", "word_embeddings.weight")


@dataclass(frozen=True)
class LoraDelta:
    """One targeted module: base[weight] += (B @ A, transposed when fan_in_fan_out or an embedding) * scaling."""
    module: str
    kind: str  # "linear" | "embedding"
    a_key: str
    b_key: str
    scaling: float
    transpose: bool


@dataclass
class MergePlan:
    adapter: Checkpoint
    base: Checkpoint
    shards: list[SafetensorsHeader]
    index_file: Path | None
    deltas: dict[str, LoraDelta] = field(default_factory=dict)  # base tensor name -> delta
    biases: dict[str, LoraDelta] = field(default_factory=dict)  # base bias name -> its lora_B.bias
    replacements: dict[str, str] = field(default_factory=dict)  # base tensor name -> adapter key
    unsupported: list[str] = field(default_factory=list)
    adapter_header: SafetensorsHeader | None = None
    vocab_rows: int | None = None  # the adapter resized the base's embeddings to this many rows (added tokens)
    # --into dequantized (workbench.merge.qlora.plan_dequantize): base tensor name -> quantized transposed
    dequantize: dict[str, bool] = field(default_factory=dict)
    quant_settings: dict | None = None

    @property
    def sharded(self) -> bool:
        return len(self.shards) > 1

    @property
    def largest_shard_bytes(self) -> int:
        return max((s.path.stat().st_size for s in self.shards), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(s.path.stat().st_size for s in self.shards)

    @property
    def touched(self) -> set[str]:
        return set(self.deltas) | set(self.biases) | set(self.replacements) | set(self.dequantize)


def plan_merge(adapter: Checkpoint, base: Checkpoint | None = None) -> MergePlan:
    """The plan for `adapter` on `base` (default: its resolved base); a BadInput when it does not fit."""
    base = base or require_base(adapter)
    shards, index_file = model_shards(Path(base.path))
    plan = MergePlan(adapter=adapter, base=base, shards=shards, index_file=index_file)
    config = json.loads((Path(adapter.path) / "adapter_config.json").read_text(encoding="utf-8"))
    plan.unsupported += _unsupported_features(config)
    weights = Path(adapter.path) / ADAPTER_WEIGHTS
    if not weights.is_file():
        plan.unsupported.append(f"the adapter's weights are not in {ADAPTER_WEIGHTS}")
    if not shards:
        plan.unsupported.append("the base's weights are not .safetensors")
    if not weights.is_file() or config.get("peft_type", "LORA") != "LORA":
        return plan
    plan.adapter_header = read_header(weights)
    _read_adapter_keys(plan, config)
    if shards:
        _check_fit(plan, config)
    return plan


def model_shards(base_dir: Path) -> tuple[list[SafetensorsHeader], Path | None]:
    """A model folder's safetensors headers (every shard, in index order) and its index file, if sharded."""
    index = base_dir / INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        names = list(dict.fromkeys(weight_map.values()))
        missing = [n for n in names if not (base_dir / n).is_file()]
        if missing:
            raise BadInput(f"base '{base_dir}': {INDEX_NAME} names shard '{missing[0]}', which is not there")
        return [read_header(base_dir / n) for n in names], index
    if (base_dir / SINGLE_NAME).is_file():
        return [read_header(base_dir / SINGLE_NAME)], None
    return [], None


def _unsupported_features(config: dict) -> list[str]:
    reasons = []
    if config.get("peft_type", "LORA") != "LORA":
        reasons.append(f"it is a {config.get('peft_type')} adapter, not LoRA")
    reasons += [f"it uses {key}" for key in _VARIANT_KEYS if config.get(key)]
    if str(config.get("init_lora_weights")).lower() == "mica":
        reasons.append("it uses MiCA")
    return reasons


def _read_adapter_keys(plan: MergePlan, config: dict) -> None:
    from peft.utils.other import get_pattern_key  # PEFT's own rule for rank_pattern/alpha_pattern keys

    a_keys, b_keys, bias_keys = {}, {}, {}
    for key in plan.adapter_header.entries:
        name = key[len(ADAPTER_PREFIX):] if key.startswith(ADAPTER_PREFIX) else key
        for suffix, kind, table in ((".lora_A.weight", "linear", a_keys), (".lora_B.weight", "linear", b_keys),
                                    (".lora_embedding_A", "embedding", a_keys),
                                    (".lora_embedding_B", "embedding", b_keys), (".lora_B.bias", "linear", bias_keys)):
            if name.endswith(suffix):
                table[name[: -len(suffix)]] = (key, kind)
                break
        else:
            if is_original_copy(name):
                continue  # what the base already has
            if "lora_" in name or "." not in name:
                plan.unsupported.append(f"it has weights a LoRA merge does not know ('{key}')")
            else:  # modules_to_save or a saved base layer (resized embeddings): the copy replaces the base's tensor
                plan.replacements[copy_target(name)] = key
    for module in sorted(set(a_keys) | set(b_keys)):
        if module not in a_keys or module not in b_keys:
            raise BadInput(f"adapter '{plan.adapter.path}': module '{module}' has only one of its lora_A/lora_B "
                           "weights; the adapter file is incomplete")
        (a_key, kind), (b_key, _) = a_keys[module], b_keys[module]
        r = config.get("rank_pattern", {}).get(get_pattern_key(config.get("rank_pattern", {}).keys(), module),
                                               config["r"])
        alpha = config.get("alpha_pattern", {}).get(
            get_pattern_key(config.get("alpha_pattern", {}).keys(), module), config.get("lora_alpha", 8))
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        delta = LoraDelta(module, kind, a_key, b_key, scaling,
                          transpose=kind == "embedding" or bool(config.get("fan_in_fan_out")))
        plan.deltas[f"{module}.weight"] = delta
        if module in bias_keys:
            plan.biases[f"{module}.bias"] = delta


def _check_fit(plan: MergePlan, config: dict) -> None:
    base_entries: dict[str, TensorEntry] = {n: e for s in plan.shards for n, e in s.entries.items()}
    tied = _base_config(plan).get("tie_word_embeddings", False)
    misfit = f"adapter '{plan.adapter.path}' does not fit base '{plan.base.path}'"
    for name in sorted(plan.touched):
        if name not in base_entries:
            if tied and name.split(".")[-2] == "lm_head":
                plan.unsupported.append("it changes lm_head, which the base ties to its input embeddings")
                continue
            raise BadInput(f"{misfit}: it changes '{name}', which the base does not have (an adapter for another "
                           "base?)")
        if not base_entries[name].is_float:
            plan.unsupported.append(f"the base's '{name}' is {base_entries[name].dtype}, not floating point")
    entries = plan.adapter_header.entries
    base_shapes = {n: e.shape for n, e in base_entries.items()}
    plan.vocab_rows = resized_rows({k: e.shape for k, e in entries.items()}, base_shapes)
    if plan.vocab_rows:
        plan.unsupported.append(f"it resizes the base's embeddings to {plan.vocab_rows} rows (tokens added in "
                                "training)")
    for name, delta in plan.deltas.items():
        target = name if name in base_entries else _tied_input_embedding(base_entries) if tied else None
        if target is None:
            continue
        a, b, w = entries[delta.a_key].shape, entries[delta.b_key].shape, _resized(plan, base_entries[target].shape)
        expected = (b[0], a[1]) if len(a) == 2 and len(b) == 2 else None
        if expected and delta.transpose:
            expected = expected[::-1]
        if expected is None or a[0] != b[1] or tuple(w) != expected:
            raise BadInput(f"{misfit}: '{name}' is {_shape(w)} in the base, but the adapter's lora_A {_shape(a)} and "
                           f"lora_B {_shape(b)} make {_shape(expected or ())} (an adapter for another base?)")
    for name, key in plan.replacements.items():
        if name in base_entries and tuple(entries[key].shape) != _resized(plan, base_entries[name].shape):
            raise BadInput(f"{misfit}: '{name}' is {_shape(base_entries[name].shape)} in the base, but the adapter's "
                           f"copy is {_shape(entries[key].shape)} (resized embeddings or another base?)")


def _resized(plan: MergePlan, shape) -> tuple:
    """A base embedding's shape once resized to the adapter's vocabulary (any other shape as it is)."""
    shape = tuple(shape)
    if plan.vocab_rows and len(shape) == 2 and shape[0] == _vocab_size(plan) and shape[0] < plan.vocab_rows:
        return (plan.vocab_rows, shape[1])
    return shape


def _vocab_size(plan: MergePlan) -> int | None:
    config = _base_config(plan)
    return config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")


def _tied_input_embedding(base_entries: dict) -> str | None:
    """The tensor a tied lm_head shares (a LoRA on lm_head changes it, as the output projection)."""
    return next((n for n in base_entries if n.endswith(_INPUT_EMBEDDINGS)), None)


def _base_config(plan: MergePlan) -> dict:
    path = Path(plan.base.path) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape) or "?"

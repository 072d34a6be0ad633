"""Adapters that grew the base's vocabulary (tokens added in training).

Axolotl, LLaMA-Factory and Unsloth save a resized embed_tokens/lm_head whole in the adapter (modules_to_save, or
PEFT's save_embedding_layers), with more rows than the base has; the tokenizer saved beside the adapter holds the
added tokens. PEFT needs the base resized to that many rows before it loads such an adapter, as its users do with
resize_token_embeddings. The rule of which adapter tensor replaces which base tensor lives here too.
"""

from pathlib import Path

ADAPTER_PREFIX = "base_model.model."


def copy_target(name: str) -> str:
    """The base tensor that an adapter's whole-tensor copy (a name without ADAPTER_PREFIX) replaces: PEFT saves a
    modules_to_save copy as `m.weight` or `m.modules_to_save.weight`, a saved embedding as `m.base_layer.weight`."""
    return name.replace(".modules_to_save.", ".").replace(".base_layer.", ".")


def is_original_copy(name: str) -> bool:
    """PEFT's copy of the untrained base module, saved beside the trained one (save_embedding_layers)."""
    return ".original_module." in name


def resized_rows(adapter_shapes: dict, base_shapes: dict) -> int | None:
    """The number of rows the adapter's embedding copies have where the base has fewer (otherwise the same
    shape), or None: `adapter_shapes` by adapter key, `base_shapes` by base tensor name."""
    rows = set()
    for key, shape in adapter_shapes.items():
        name = key[len(ADAPTER_PREFIX):] if key.startswith(ADAPTER_PREFIX) else key
        if "lora_" in name or is_original_copy(name):
            continue
        target = base_shapes.get(copy_target(name))
        if target is not None and len(shape) == 2 == len(target) and shape[1] == target[1] and shape[0] > target[0]:
            rows.add(int(shape[0]))
    return max(rows) if rows else None


def resize_base_for(model, adapter_dir: Path) -> int | None:
    """Resize a loaded base's token embeddings to the adapter's rows, before PEFT loads the adapter onto it."""
    from workbench.checkpoints.safetensors_files import shapes

    weights = Path(adapter_dir) / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    rows = resized_rows(shapes(weights), {n: list(t.shape) for n, t in model.state_dict().items()})
    if rows:  # the added rows are replaced by the adapter's copies: no need to initialise them from the mean
        model.resize_token_embeddings(rows, mean_resizing=False)
    return rows

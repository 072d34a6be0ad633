"""Is a resolved checkpoint loadable? Checked from its files before a run is opened or a model loads.

Each problem is one BadInput naming the file: a config.json that is not JSON, names a model transformers does
not know (or custom code, which needs trust_remote_code: wb never runs a checkpoint's own code) or gives other
shapes than the weights have, a .safetensors or .gguf file cut short, an adapter whose base is missing or has
other shapes. What is loadable but surprising
(custom code beside a model type transformers knows) comes back as a warning for the run's manifest.
"""

from functools import lru_cache
from pathlib import Path

from workbench.checkpoints.checkpoint import TOKENIZER_FILES, Checkpoint
from workbench.checkpoints.gguf_file import check_gguf_file
from workbench.checkpoints.safetensors_files import check_file, shapes
from workbench.errors import BadInput
from workbench.store.files import read_json_object
from workbench.system.extras import require
from workbench.system.failures import first_line
from workbench.system.user_files import MAX_MODEL_JSON_BYTES


def check_checkpoint(ckpt: Checkpoint, base: Checkpoint | None = None) -> list[str]:
    """Raise BadInput for a checkpoint that cannot load; return warnings worth recording. `base`: the base an
    adapter will be put on, when not its own."""
    if ckpt.format == "gguf":
        check_gguf_file(Path(ckpt.path))
        return []
    if ckpt.kind == "adapter":
        return check_adapter(ckpt, base)
    return check_model_folder(Path(ckpt.path))


def record_checks(ckpt: Checkpoint, base: Checkpoint | None = None) -> None:
    """check_checkpoint, its warnings shown on stderr and kept in the checkpoint's record (the run manifest)."""
    warnings = check_checkpoint(ckpt, base)
    if warnings:
        from workbench.system.console import warn

        for line in warnings:
            warn(line)
        ckpt.extra["warnings"] = warnings


# read by transformers and llama.cpp's converter alike: each must be a JSON object
JSON_SIDECARS = (*(n for n in TOKENIZER_FILES if n.endswith(".json")), "generation_config.json")


def check_model_folder(path: Path) -> list[str]:
    warnings = check_config(path / "config.json")
    for name in JSON_SIDECARS:
        if (path / name).exists():
            read_json_object(path / name, MAX_MODEL_JSON_BYTES)
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = set(read_json_object(index, MAX_MODEL_JSON_BYTES).get("weight_map", {}).values())
        for shard in sorted(shards):
            if not (path / shard).is_file():
                raise BadInput(f"{index}: names shard '{shard}', which is missing")
    for weights in sorted(path.glob("*.safetensors")):
        check_file(weights)
    check_weights_fit_config(path)
    return warnings


def meta_model(path: Path):
    """transformers' causal LM for the folder's config.json, built on the meta device (no memory, no weights): its
    module names and shapes. Kept per config file (its path and modification time), so the checks of one command
    build it once."""
    # The folder, not config.json resolved: in an HF cache snapshot config.json links into blobs/.
    return _meta_model(str(path.absolute()), (path / "config.json").stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _meta_model(folder: str, mtime_ns: int):
    torch = require("torch", "Reading a model's config", "train")
    transformers = require("transformers", "Reading a model's config", "eval")
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(folder))


def check_weights_fit_config(path: Path) -> None:
    """The shapes config.json gives (transformers' model for it, built on the meta device: no memory, no weights)
    are the shapes in the .safetensors headers, for every tensor name both have. A quantized checkpoint's packed
    tensors have other shapes by design and are left to its loader."""
    config = path / "config.json"
    if "quantization_config" in read_json_object(config):
        return
    stored = {}
    for weights in sorted(path.glob("*.safetensors")):
        stored.update({name: (tuple(shape), weights.name) for name, shape in shapes(weights).items()})
    if not stored:
        return
    try:
        model = meta_model(path)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        if "Unrecognized configuration class" in str(exc):
            return  # no causal-LM class for it (a multimodal wrapper, say): what loads it checks its own shapes
        raise BadInput(f"{config}: transformers cannot build the model it describes ({first_line(exc)})") from None
    for name, tensor in model.state_dict().items():
        shape, file = stored.get(name, (None, None))
        if shape is not None and shape != tuple(tensor.shape):
            raise BadInput(f"{config}: does not match the weights: '{name}' is {list(shape)} in {file}, config.json "
                           f"gives {list(tensor.shape)}; fix config.json or re-save the checkpoint")


def check_config(config: Path) -> list[str]:
    cfg = read_json_object(config)
    model_type = cfg.get("model_type")
    custom = bool(cfg.get("auto_map"))
    if not model_type:
        raise BadInput(f"{config}: no 'model_type'; transformers cannot tell which model this is")
    if model_type not in _known_model_types():
        if custom:
            raise BadInput(f"{config}: model_type '{model_type}' is the checkpoint's own code (auto_map), which "
                           "needs trust_remote_code; wb never runs a checkpoint's code")
        raise BadInput(f"{config}: model_type '{model_type}' is not known to transformers {_transformers_version()}")
    if custom:
        return [f"{config}: auto_map names the checkpoint's own code; wb did not run it (no trust_remote_code) "
                f"and used transformers' built-in '{model_type}' classes"]
    return []


def check_adapter(adapter: Checkpoint, base: Checkpoint | None = None) -> list[str]:
    path = Path(adapter.path)
    read_json_object(path / "adapter_config.json")
    weights = path / "adapter_model.safetensors"
    if weights.exists():
        check_file(weights)
    if base is None:
        base = _named_base(adapter)
    if base.kind == "adapter" or base.format != "hf":
        raise BadInput(f"adapter '{path}': its base '{base.path}' must be an HF model folder, not a "
                       f"{base.kind} {base.format} checkpoint")
    warnings = check_model_folder(Path(base.path))
    from workbench.checkpoints.adapter_fit import check_shapes

    check_shapes(adapter, base)
    return warnings


def _named_base(adapter: Checkpoint) -> Checkpoint:
    """The base the adapter's own files name, as resolve_checkpoint resolved it (a path, `default`, or a hub id
    through the Hugging Face cache); a BadInput naming the file that names it when it cannot be had."""
    named = adapter.base
    source = "wb_checkpoint.json" if (Path(adapter.path) / "wb_checkpoint.json").exists() else "adapter_config.json"
    if not named:
        raise BadInput(f"adapter '{adapter.path}': {source} names no base model (base_model_name_or_path): give it "
                       "with --base BASE")
    if adapter.base_checkpoint is not None:
        return adapter.base_checkpoint
    from workbench.checkpoints.hub import parse_hub_id

    if parse_hub_id(named) is None:
        raise BadInput(f"adapter '{adapter.path}': its base '{named}' ({source}) does not exist")
    raise BadInput(adapter.derived.get("base_error") or f"adapter '{adapter.path}': its base '{named}' ({source}) "
                   "could not be resolved")


def _known_model_types() -> set[str]:
    auto = require("transformers.models.auto.configuration_auto", "Reading a model's config", "eval")
    return set(auto.CONFIG_MAPPING_NAMES)


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")

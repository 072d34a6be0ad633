"""Is a resolved checkpoint loadable? Checked from its files before a run is opened or a model loads.

Each problem is one BadInput naming the file: a config.json that is not JSON or names a model transformers does
not know (or custom code, which needs trust_remote_code: wb never runs a checkpoint's own code), a .safetensors
or .gguf file cut short, an adapter whose base is missing or has other shapes. What is loadable but surprising
(custom code beside a model type transformers knows) comes back as a warning for the run's manifest.
"""

import json
import struct
from pathlib import Path

from workbench.checkpoint import DEFAULT_REF, Checkpoint
from workbench.errors import BadInput


def check_checkpoint(ckpt: Checkpoint, base: Checkpoint | None = None) -> list[str]:
    """Raise BadInput for a checkpoint that cannot load; return warnings worth recording. `base`: the base an
    adapter will be put on, when not its own."""
    if ckpt.format == "gguf":
        check_gguf_file(Path(ckpt.path))
        return []
    if ckpt.kind == "adapter":
        return check_adapter(ckpt, base)
    return check_model_folder(Path(ckpt.path))


def resolve_checked(ref: str, base: str | None = None) -> Checkpoint:
    """resolve_checkpoint, with the files checked before the weights are hashed (a large file's hash is cached
    under WB_HOME: a damaged checkpoint must not leave one). `base` (an adapter's --base): the base to put the
    adapter on instead of the one its files name, checked to fit it."""
    from workbench.checkpoint import weights_sha
    from workbench.resolve import resolve_checkpoint

    if base:
        return _resolve_on_base(ref, base)
    ckpt = resolve_checkpoint(ref, with_sha=False)
    record_checks(ckpt)
    if str(ref) != DEFAULT_REF:
        ckpt.sha = weights_sha(Path(ckpt.path))
    return ckpt


def _resolve_on_base(ref: str, base: str) -> Checkpoint:
    from workbench.eval.adapter_fit import check_adapter_fits
    from workbench.resolve import resolve_checkpoint

    ckpt = resolve_checkpoint(ref)
    base_ckpt = resolve_checkpoint(base, with_sha=False)
    if ckpt.kind == "adapter":  # else check_adapter_fits says what is wrong
        record_checks(ckpt, base_ckpt)
    check_adapter_fits(ckpt, base_ckpt)
    ckpt.base = DEFAULT_REF if base == DEFAULT_REF else str(base_ckpt.path)
    ckpt.base_checkpoint = base_ckpt
    return ckpt


def record_checks(ckpt: Checkpoint, base: Checkpoint | None = None) -> None:
    """check_checkpoint, its warnings shown on stderr and kept in the checkpoint's record (the run manifest)."""
    warnings = check_checkpoint(ckpt, base)
    if warnings:
        from workbench.cli.output import info

        for line in warnings:
            info(f"[yellow]warning:[/] {line}")
        ckpt.extra["warnings"] = warnings


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json")


def check_model_folder(path: Path) -> list[str]:
    warnings = check_config(path / "config.json")
    for name in TOKENIZER_FILES:  # read by transformers and llama.cpp's converter alike
        if (path / name).exists():
            read_json_object(path / name)
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = set(read_json_object(index).get("weight_map", {}).values())
        for shard in sorted(shards):
            if not (path / shard).is_file():
                raise BadInput(f"{index}: names shard '{shard}', which is missing")
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)
    return warnings


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
        check_safetensors(weights)
    if base is None:
        base = _named_base(adapter)
    if base.kind == "adapter" or base.format != "hf":
        raise BadInput(f"adapter '{path}': its base '{base.path}' must be an HF model folder, not a "
                       f"{base.kind} {base.format} checkpoint")
    warnings = check_model_folder(Path(base.path))
    from workbench.eval.adapter_fit import check_shapes

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
    from workbench.hub import parse_hub_id

    if parse_hub_id(named) is None:
        raise BadInput(f"adapter '{adapter.path}': its base '{named}' ({source}) does not exist")
    raise BadInput(adapter.derived.get("base_error") or f"adapter '{adapter.path}': its base '{named}' ({source}) "
                   "could not be resolved")


def check_safetensors(path: Path) -> None:
    """The header parses and the tensors it lists fit in the file (a cut file is the usual damage)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise BadInput(f"{path}: not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if 8 + n > size:
            raise BadInput(f"{path}: truncated or not a safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadInput(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise BadInput(f"{path}: not a safetensors file (its header is not a JSON object)")
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        raise BadInput(f"{path}: not a safetensors file (a tensor entry has no data_offsets)") from None
    if 8 + n + end > size:
        raise BadInput(f"{path}: truncated: its header lists {8 + n + end} bytes, the file has {size}; "
                       "re-save or re-download it")


# GGUF value types -> struct format of one value (8: string, 9: array are read by hand)
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def check_gguf_file(path: Path) -> None:
    """Magic, header, tensor table, and that every tensor's data lies inside the file."""
    import mmap

    size = path.stat().st_size
    if size < 24:
        raise BadInput(f"checkpoint '{path}': not a GGUF file (only {size} bytes)")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return _check_gguf(_Reader(data, path), path, size)


def _check_gguf(reader: "_Reader", path: Path, size: int) -> None:
    if reader.take(4) != b"GGUF":
        raise BadInput(f"checkpoint '{path}': not a GGUF file (bad magic)")
    version = reader.unpack("I")
    if version < 2:
        raise BadInput(f"{path}: GGUF version {version} is too old for llama.cpp")
    n_tensors, n_kv = reader.unpack("Q"), reader.unpack("Q")
    alignment = 32
    for _ in range(n_kv):
        key = reader.string()
        value = reader.value(reader.unpack("I"))
        if key == "general.alignment" and isinstance(value, int) and value > 0:
            alignment = value
    tensors = []
    for _ in range(n_tensors):
        reader.string()
        dims = [reader.unpack("Q") for _ in range(reader.unpack("I"))]
        tensors.append((dims, reader.unpack("I"), reader.unpack("Q")))
    start = -(-reader.pos // alignment) * alignment
    end = max((start + offset + _tensor_bytes(dims, kind) for dims, kind, offset in tensors), default=start)
    if end > size:
        raise BadInput(f"{path}: truncated GGUF file: its tensors need {end} bytes, the file has {size}")


def _tensor_bytes(dims: list[int], kind: int) -> int:
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
    except (ImportError, ValueError, KeyError):
        return 1  # an unknown type: at least its first byte must be there
    count = 1
    for d in dims:
        count *= d
    return count // block * type_size


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BadInput(f"{self.path}: truncated GGUF file (its header ends at byte {len(self.data)})")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("Q")).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.unpack("I"), self.unpack("Q")
            if item in _GGUF_SCALARS:  # skipped, not decoded: a vocabulary's scores are 50k floats
                self.take(count * struct.calcsize(_GGUF_SCALARS[item]))
            else:
                for _ in range(count):
                    self.value(item)
            return None
        raise BadInput(f"{self.path}: not a valid GGUF file (unknown value type {kind} at byte {self.pos})")


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; a one-line BadInput naming it otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    if not isinstance(value, dict):
        raise BadInput(f"{path}: expected a JSON object")
    return value


def _known_model_types() -> set[str]:
    from workbench.extras import require

    auto = require("transformers.models.auto.configuration_auto", "Reading a model's config", "eval")
    return set(auto.CONFIG_MAPPING_NAMES)


def _transformers_version() -> str:
    from importlib.metadata import version

    return version("transformers")

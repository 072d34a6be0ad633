"""GGUF export: llama.cpp's own converter (HF -> f16 GGUF) and quantizer (llama_model_quantize).

Everything is built in a hidden folder beside the output and renamed into place only when complete, so a
failure or Ctrl-C leaves no partial artifacts.
"""

import errno
import json
import re
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput, EnvironmentProblem, MissingExtra
from workbench.export.source import artifact_stem, build_staged, export_source
from workbench.system.extras import available, require
from workbench.system.progress import Steps

# user-facing name -> llama_cpp ftype constant; f16/bf16 are written by the converter itself
QUANT_TYPES: dict[str, str | None] = {
    "f16": None,
    "bf16": None,
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
DEFAULT_QUANTS = ["q4_k_m"]
TOOL = "llama.cpp convert_hf_to_gguf + llama_model_quantize"

_TENSOR_LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+\S+\s+- \[.*\], type =\s+(\w+), (?:converting to (\w+)|size)")
_FALLBACK = re.compile(r"warning: (\S+)\s+- ncols\s+(\d+) not divisible by (\d+) \(required for type\s+(\w+)\)"
                       r" -> falling back to\s+(\w+)")


def parse_quants(quants: list[str] | str | None) -> list[str]:
    """Normalize `q4_k_m`, `Q4_K_M`, `"q8_0,q4_k_m"` or a list of those; refuse unknown types."""
    if quants is None:
        return list(DEFAULT_QUANTS)
    items = [quants] if isinstance(quants, str) else list(quants)
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()]
    for name in names:
        if name not in QUANT_TYPES:
            raise BadInput(f"unknown GGUF quant type '{name}' (choose from {', '.join(QUANT_TYPES)})")
    return list(dict.fromkeys(names)) or list(DEFAULT_QUANTS)


def check(ckpt: Checkpoint, quants: list[str] | str | None) -> list[str]:
    """Cheap validation before any model loads; returns the normalized quant list."""
    names = parse_quants(quants)
    if ckpt.format == "gguf":
        raise BadInput(f"checkpoint '{ckpt.path}' is already a GGUF file; export takes an HF model folder or adapter")
    if ckpt.format not in ("hf", "peft"):
        raise BadInput(f"checkpoint '{ckpt.path}': GGUF export needs an HF model or adapter, not {ckpt.format}")
    if ckpt.kind != "adapter":
        _check_config(ckpt.path)
        if _template_files(ckpt.path) is None:
            raise BadInput(f"checkpoint '{ckpt.path}': no chat template (chat_template.jinja or tokenizer_config.json "
                           "chat_template); the GGUF would have none to be served with")
    for module in ("torch", "transformers"):  # the converter runs in a subprocess of this interpreter
        if not available(module):
            raise MissingExtra("GGUF conversion (llama.cpp's convert_hf_to_gguf.py)", "eval", module)
    if any(QUANT_TYPES[q] for q in names):
        require("llama_cpp", "GGUF quantization", "gguf")
    require("gguf", "GGUF export", "gguf")
    return names


def _check_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path / 'config.json'}: unreadable ({exc})") from None


def _template_files(path: Path) -> str | None:
    """Which file holds a chat template, if any (the converter reads all three)."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return "chat_template"
    try:
        if json.loads((path / "tokenizer_config.json").read_text()).get("chat_template"):
            return "tokenizer_config.json"
    except (OSError, json.JSONDecodeError):
        pass
    return None


def export_gguf(ckpt: Checkpoint, out_dir: Path, quants: list[str] | str | None = None, *,
                keep_f16: bool = False, progress: bool = True, ollama: bool = True,
                adapter_gguf: bool = False, imatrix_data: Path | None = None) -> list[Checkpoint]:
    """Export an HF model (or an adapter, merged first) to one GGUF file per quant type in out_dir."""
    names = check(ckpt, quants)
    if imatrix_data is not None:
        from workbench.system.user_files import regular_file

        regular_file(imatrix_data, "importance-matrix data")
    if adapter_gguf:
        from workbench.export.gguf.adapter import check_adapter

        check_adapter(ckpt)

    def build(out, work, steps):
        return _build(ckpt, out, work, names, keep_f16, steps, ollama, adapter_gguf, imatrix_data)

    return build_staged(out_dir, progress, build)


def _build(ckpt: Checkpoint, out: Path, work: Path, names: list[str], keep_f16: bool, steps: "Steps",
           ollama: bool = True, adapter_gguf: bool = False, imatrix_data: Path | None = None) -> list[Checkpoint]:
    from workbench.runtimes.llamacpp.tools import locate_tools

    source, merged = export_source(ckpt, work, steps)
    with steps.step("locate llama.cpp's converter"):
        tools = locate_tools()
    _check_architecture(source.path, tools)
    # transformers' import and the tokenizer load overlap the converter subprocess instead of preceding it
    loading = ThreadPoolExecutor(1, thread_name_prefix="wb-tokenizer").submit(_source_tokenizer, source.path)
    source_sha = ckpt.sha or weights_sha(ckpt.path)

    name = artifact_stem(ckpt)
    files: dict[str, Path] = {}
    reports: dict[str, dict] = {}
    metas: dict[Path, dict] = {}  # reading a GGUF's metadata takes seconds (tens of thousands of vocab strings)
    need_f16 = keep_f16 or "f16" in names or any(QUANT_TYPES[q] for q in names)
    if need_f16:
        f16 = (out if keep_f16 or "f16" in names else work) / f"{name}-F16.gguf"
        with steps.step("convert to GGUF f16 (llama.cpp convert_hf_to_gguf.py)", "convert_f16"):
            tools.convert(source.path, f16, "f16", work / "convert-f16.log")
        if keep_f16 or "f16" in names:  # else the quantized files are checked: reading metadata takes seconds
            metas[f16] = _check_template(f16, _template_of(loading.result()), source.path)
            files["f16"] = f16
    if "bf16" in names:
        files["bf16"] = out / f"{name}-BF16.gguf"
        with steps.step("convert to GGUF bf16 (llama.cpp convert_hf_to_gguf.py)", "convert_bf16"):
            tools.convert(source.path, files["bf16"], "bf16", work / "convert-bf16.log")
    imatrix, imatrix_summary = None, None
    if imatrix_data is not None and any(QUANT_TYPES[q] for q in names):
        from workbench.export.gguf.imatrix import ImatrixParam, compute_imatrix

        with steps.step(f"importance matrix from {Path(imatrix_data).name}", "imatrix"):
            arch = (metas.get(f16) or _check_template(f16, _template_of(loading.result()), source.path))["architecture"]
            matrix, imatrix_summary = compute_imatrix(source.path, Path(imatrix_data), arch)
            imatrix = ImatrixParam(matrix)
    for quant in (q for q in names if QUANT_TYPES[q]):
        files[quant] = out / f"{name}-{quant.upper()}.gguf"
        with steps.step(f"quantize {quant} (llama_model_quantize)", f"quantize_{quant}"):
            reports[quant] = quantize(f16, files[quant], quant, **({"imatrix": imatrix} if imatrix else {}))
        if reports[quant]["fallbacks"]:
            steps.note(f"{quant}: {describe_fallbacks(reports[quant])}")

    order = names + (["f16"] if keep_f16 and "f16" not in names else [])
    artifacts = []
    for quant in order:
        meta = metas.get(files[quant]) or _check_template(files[quant], _template_of(loading.result()), source.path,
                                                          reports.get(quant))
        metas[files[quant]] = meta
        art = Checkpoint(
            path=files[quant], name=files[quant].stem, kind="quantized", format="gguf", base=ckpt.base,
            sha=weights_sha(files[quant]),
            parent={"name": ckpt.name, "path": str(ckpt.path), "sha": source_sha, "kind": ckpt.kind,
                    "quant": quant, "tool": TOOL, "llama_cpp": tools.version, "converter": tools.origin,
                    **merged,
                    **({"imatrix": imatrix_summary | {"missing": reports[quant]["imatrix_missing"]}}
                       if imatrix_summary and quant in reports else {})},
            extra={"size_bytes": files[quant].stat().st_size, "file_type": meta["file_type"],
                   "seconds": _file_seconds(quant, steps.seconds),
                   "tensor_types": meta["tensor_types"], **_fallback_fields(reports.get(quant))},
        )
        artifacts.append(art)
    base_dir = None
    if adapter_gguf:
        from workbench.checkpoints.checkpoint import require_base
        from workbench.export.gguf.adapter import build_adapter_files

        base = require_base(ckpt)
        base_dir = base.path
        artifacts += build_adapter_files(ckpt, base, {a.parent["quant"]: a for a in artifacts}, tools, work, out, steps,
                                         quantize, _base_converter(base.path, name, tools, work, out))
    if ollama:
        with steps.step("Ollama bundle: Modelfile + template round-trip check"):
            _ollama_bundles(artifacts, source.path, out, metas, base_dir, loading.result())
        for art in artifacts:
            if art.extra["ollama"].get("error"):
                steps.note(f"{art.path.name}: Ollama bundle: {art.extra['ollama']['error']}")
    for art in artifacts:
        art.save_meta()
    return artifacts


def _base_converter(base_dir: Path, merged_name: str, tools, work: Path, out: Path):
    """convert(quant) -> the base model as a GGUF of that type in `out`, from one f16 conversion."""
    stem = base_dir.name if base_dir.name != merged_name else f"base-{base_dir.name}"
    f16 = work / f"{stem}-F16.gguf"

    def convert(quant: str) -> Path:
        target = out / f"{stem}-{quant.upper()}.gguf"
        if quant == "bf16":
            tools.convert(base_dir, target, "bf16", work / "convert-base-bf16.log")
            return target
        if not f16.exists():
            tools.convert(base_dir, f16, "f16", work / "convert-base-f16.log")
        if quant == "f16":
            shutil.copyfile(f16, target)
        else:
            quantize(f16, target, quant)
        return target

    return convert


def _ollama_bundles(artifacts: list[Checkpoint], source_dir: Path, out: Path, metas: dict[Path, dict],
                    base_dir: Path | None = None, tokenizer=None) -> None:
    """A Modelfile per file; the adapter GGUF's one serves it on its base GGUF (FROM base + ADAPTER)."""
    from workbench.chat import format as chat_format
    from workbench.export.ollama import bundle as ollama
    from workbench.runtimes.llamacpp import model as llamacpp

    transformers = require("transformers", "Ollama bundle (chat template)", "eval")
    tokenizers = {source_dir: tokenizer or transformers.AutoTokenizer.from_pretrained(str(source_dir))}
    if base_dir is not None:
        tokenizers[base_dir] = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    for art in artifacts:
        model_dir = base_dir if (art.parent or {}).get("role") == "adapter base" else source_dir
        weights = out / art.extra["base_gguf"] if art.kind == "adapter" else art.path
        meta = metas.get(weights) or llamacpp.gguf_metadata(weights)
        metas[weights] = meta
        ids = chat_format.generation_eos_ids(model_dir) + [meta[k] for k in ("eos_token_id", "eot_token_id")
                                                          if meta.get(k) is not None]
        fmt = chat_format.from_tokenizer(tokenizers[model_dir], ids)
        adapter = {"adapter": art.path.name, "base_gguf": weights.name} if art.kind == "adapter" else {}
        art.extra["ollama"] = ollama.write_bundle(art.path, tokenizers[model_dir], model_dir, fmt,
                                                  llama_tokenize=llamacpp.gguf_tokenizer(weights),
                                                  adds_bos=bool(meta.get("add_bos_token")), **adapter)
    written = [a.extra["ollama"]["modelfile"] for a in artifacts if "modelfile" in a.extra["ollama"]]
    if written:
        ollama.write_readme(out, written)


def _check_architecture(model_dir: Path, tools) -> None:
    archs = _check_config(model_dir).get("architectures") or []
    supported = tools.supported_architectures()
    if supported is not None and archs and archs[0] not in supported:
        raise BadInput(f"{model_dir / 'config.json'}: architecture {archs[0]} is not supported by llama.cpp's "
                       f"converter (llama-cpp-python {tools.version})")


def _source_tokenizer(model_dir: Path):
    transformers = require("transformers", "Reading the checkpoint's chat template", "eval")
    return transformers.AutoTokenizer.from_pretrained(str(model_dir))


def _template_of(tokenizer) -> str | None:
    """The chat template transformers applies for this folder: the one the checkpoint was evaluated with."""
    template = tokenizer.chat_template
    return template.get("default") if isinstance(template, dict) else template


def _check_template(path: Path, expected: str | None, source: Path, quantize_report: dict | None = None) -> dict:
    """The file's metadata, its embedded chat template checked. A quantized file is read as llama.cpp reads it,
    with the tensor types the quantizer reported (much faster than gguf-py's full parse)."""
    from workbench.runtimes.llamacpp.model import gguf_metadata, runtime_metadata

    if quantize_report and quantize_report.get("tensor_types"):
        meta = runtime_metadata(path) | {"tensor_types": quantize_report["tensor_types"]}
    else:
        meta = gguf_metadata(path)
    if not meta["chat_template"]:
        raise EnvironmentProblem(f"{path.name}: llama.cpp's converter embedded no tokenizer.chat_template "
                                 f"although {source} has one")
    if expected is not None and meta["chat_template"] != expected:
        raise BadInput(f"{source}: the chat template embedded in the GGUF differs from the one transformers "
                       "applies (tokenizer_config.json's chat_template and chat_template.jinja disagree?)")
    return meta


def quantize(src: Path, dst: Path, quant: str, imatrix=None) -> dict:
    """llama_model_quantize src -> dst; returns what llama.cpp reported, including per-tensor type fallbacks."""
    from workbench.runtimes.llamacpp.native import captured_llama_log, cpu_threads

    llama_cpp = require("llama_cpp", "GGUF quantization", "gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = cpu_threads()
    if imatrix is not None:
        params.imatrix = imatrix.pointer()
    with captured_llama_log() as log:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if status != 0 or not dst.exists():
        last = next((ln for ln in reversed(log) if "error" in ln.lower()), f"status {status}")
        if shutil.disk_usage(dst.parent).free < src.stat().st_size:
            # llama.cpp reports a failed write as "iostream error", without errno: a disk left with less room than
            # the f16 source (a quantized file is smaller) is what it ran into; the export's disk_full_as names -o
            raise OSError(errno.ENOSPC, f"llama_model_quantize to {quant} failed: {last.strip()}")
        raise EnvironmentProblem(f"llama_model_quantize to {quant} failed: {last.strip()}")
    return parse_quantize_log(log)


def parse_quantize_log(lines: list[str]) -> dict:
    fallbacks: Counter = Counter()
    ncols: dict[str, set] = {}
    for line in lines:
        m = _FALLBACK.search(line)
        if m:
            key = f"{m.group(4)}->{m.group(5)}"
            fallbacks[key] += 1
            ncols.setdefault(key, set()).add(f"{m.group(2)} not divisible by {m.group(3)}")
    summary = next((ln.split("WARNING:", 1)[1].strip() for ln in lines if "required fallback quantization" in ln), None)
    missing = [ln.split("did not find weights for", 1)[1].strip() for ln in lines if "did not find weights for" in ln]
    types = Counter((m.group(2) or m.group(1)).upper() for m in map(_TENSOR_LINE.search, lines) if m)
    return {"fallbacks": dict(fallbacks), "fallback_reasons": {k: sorted(v) for k, v in ncols.items()},
            "fallback_summary": summary, "imatrix_missing": missing, "tensor_types": dict(types.most_common())}


def describe_fallbacks(report: dict) -> str:
    parts = [f"{k} x{n} (ncols {', '.join(report['fallback_reasons'][k])})" for k, n in report["fallbacks"].items()]
    head = report["fallback_summary"] or f"{sum(report['fallbacks'].values())} tensor(s) required fallback"
    return f"llama.cpp: {head}: " + "; ".join(parts)


def _file_seconds(quant: str, seconds: dict[str, float]) -> dict[str, float]:
    """What making this one file took: its conversion, plus its quantization for the quantized types."""
    if quant == "bf16":
        return {"convert": seconds.get("convert_bf16", 0.0), "total": seconds.get("convert_bf16", 0.0)}
    parts = {"convert": seconds.get("convert_f16", 0.0)}
    if QUANT_TYPES[quant]:
        parts["quantize"] = seconds.get(f"quantize_{quant}", 0.0)
    return parts | {"total": round(sum(parts.values()), 2)}


def _fallback_fields(report: dict | None) -> dict:
    if not report:
        return {}
    return {"fallbacks": report["fallbacks"], "fallback_summary": report["fallback_summary"]}

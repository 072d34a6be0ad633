"""AWQ and GPTQ export through GPTQModel, in the on-disk format transformers and vLLM load (a model folder whose
config.json carries quantization_config).

Quant names are `w<bits>a16[-g<group>]`: weight bits, 16-bit activations, group size. Without -g, the largest of
128/64/32 that divides every linear layer's input width is used (SmolLM2-135M's 576 needs 64).

GPTQModel runs in a child process of this interpreter (`python -m workbench.export.hf_quant SPEC.json`): it prints
hundreds of lines to stdout and sets process-wide state (thread pools, allocator variables), which stay out of
wb's own output and process that way. Its log is kept beside the weights as quantize.log.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.data.records import sha256_file
from workbench.errors import BadInput, EnvironmentProblem, MissingExtra
from workbench.export.source import artifact_stem, build_staged, export_source
from workbench.store.files import write_json_atomic
from workbench.system.extras import available, require

METHODS = {"gptq": {"bits": (2, 3, 4, 8), "label": "GPTQ"}, "awq": {"bits": (4,), "label": "AWQ"}}
DEFAULT_QUANTS = ["w4a16"]
GROUP_SIZES = (128, 64, 32)
DEFAULT_CALIBRATION = "calibration/default.jsonl"  # under exporters/: see its README
CALIBRATION_WINDOW = 256  # tokens per calibration sample
CALIBRATION_MAX_TOKENS = 64 * 1024
TOOL = "GPTQModel"
AWQ_OUT_MULTIPLE = 64  # GPTQModel 7.6's AWQ clip search batches output channels by 64 (asserted)
_LAYER = re.compile(r"Quantizing layer (\d+) of (\d+)")
PROGRESS_POLL_SECONDS = 1.0
_NAME = re.compile(r"^w(?P<bits>\d+)a16(?:-g(?P<group>\d+))?$")


@dataclass(frozen=True)
class QuantSpec:
    name: str  # as resolved, always with its group: w4a16-g64
    bits: int
    group_size: int


def linear_widths(config: dict) -> dict[str, int]:
    """Input widths of a decoder's linear layers, by the config.json field they come from."""
    cfg = config.get("text_config") or config
    widths = {"hidden_size": cfg.get("hidden_size"), "intermediate_size": cfg.get("intermediate_size")}
    heads, head_dim = cfg.get("num_attention_heads"), cfg.get("head_dim")
    if heads and head_dim:
        widths["num_attention_heads * head_dim"] = heads * head_dim
    return {k: int(v) for k, v in widths.items() if v}


def output_widths(config: dict) -> dict[str, int]:
    """Output widths of a decoder's linear layers (q/o, k/v, gate/up, down), by config.json field."""
    cfg = config.get("text_config") or config
    heads, kv = cfg.get("num_attention_heads"), cfg.get("num_key_value_heads") or cfg.get("num_attention_heads")
    head_dim = cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads and cfg.get("hidden_size") else None)
    widths = {"hidden_size": cfg.get("hidden_size"), "intermediate_size": cfg.get("intermediate_size")}
    if kv and head_dim:
        widths["num_key_value_heads * head_dim"] = kv * head_dim
    return {k: int(v) for k, v in widths.items() if v}


def parse_quants(method: str, quants: list[str] | str | None, config: dict, where: Path) -> list[QuantSpec]:
    """Normalize `w4a16`, `W4A16-G32`, `"w4a16,w8a16"` or a list; refuse unknown names and groups that do not
    divide the model's layer widths (naming the config.json field)."""
    label, allowed = METHODS[method]["label"], METHODS[method]["bits"]
    items = DEFAULT_QUANTS if quants is None else [quants] if isinstance(quants, str) else list(quants)
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()] or DEFAULT_QUANTS
    widths = linear_widths(config)
    specs = []
    for name in dict.fromkeys(names):
        m = _NAME.match(name)
        if not m or int(m["bits"]) not in allowed:
            choices = ", ".join(f"w{b}a16" for b in allowed)
            raise BadInput(f"unknown {label} quant type '{name}' (choose from {choices}, optionally with "
                           f"-g{'/-g'.join(map(str, GROUP_SIZES))} for the group size)")
        if m["group"]:
            group = int(m["group"])
            bad = {k: v for k, v in widths.items() if v % group}
            if group not in GROUP_SIZES:
                raise BadInput(f"{label} quant '{name}': group size {group} is not one of {GROUP_SIZES}")
            if bad:
                field, width = next(iter(bad.items()))
                raise BadInput(f"{where}: {field} = {width} is not divisible by the group size {group} of '{name}'"
                               f" (try {_auto_group(widths, where, label)[1]})")
        else:
            group = _auto_group(widths, where, label)[0]
        specs.append(QuantSpec(name=f"w{m['bits']}a16-g{group}", bits=int(m["bits"]), group_size=group))
    return list({s.name: s for s in specs}.values())


def _auto_group(widths: dict[str, int], where: Path, label: str) -> tuple[int, str]:
    for group in GROUP_SIZES:
        if all(v % group == 0 for v in widths.values()):
            return group, f"-g{group}"
    raise BadInput(f"{where}: layer widths {widths} are not divisible by any {label} group size {GROUP_SIZES}")


def source_dir(ckpt: Checkpoint) -> Path:
    """The folder whose config.json describes the weights that will be quantized (the base, for an adapter)."""
    if ckpt.kind == "adapter":
        from workbench.checkpoints.checkpoint import require_base

        return require_base(ckpt).path
    return ckpt.path


def read_config(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{model_dir / 'config.json'}: unreadable ({exc})") from None


def check(method: str, ckpt: Checkpoint, quants: list[str] | str | None) -> list[str]:
    """Cheap validation before any model loads; returns the resolved quant names."""
    label = METHODS[method]["label"]
    if ckpt.format not in ("hf", "peft"):
        raise BadInput(f"checkpoint '{ckpt.path}': {label} export needs an HF model or adapter, not {ckpt.format}")
    model_dir = source_dir(ckpt)
    config = read_config(model_dir)
    if config.get("quantization_config"):
        raise BadInput(f"{model_dir / 'config.json'}: the model is already quantized "
                       f"({config['quantization_config'].get('quant_method', '?')}); export the full-precision model")
    specs = parse_quants(method, quants, config, model_dir / "config.json")
    if method == "awq":
        bad = {k: v for k, v in output_widths(config).items() if v % AWQ_OUT_MULTIPLE}
        if bad:
            field, width = next(iter(bad.items()))
            raise BadInput(f"{model_dir / 'config.json'}: {field} = {width}: AWQ's clip search ({TOOL}) needs every "
                           f"layer's output width to be a multiple of {AWQ_OUT_MULTIPLE}")
    for module in ("torch", "transformers"):
        require(module, f"{label} export", "eval")
    _require_gptqmodel(label)
    _check_architecture(config, model_dir, label)
    return [s.name for s in specs]


def _require_gptqmodel(label: str) -> None:
    if not available("gptqmodel"):  # not imported here: the import alone takes ~10 s and prints a banner
        raise MissingExtra(f"{label} export", label.lower(), "gptqmodel")


def _check_architecture(config: dict, model_dir: Path, label: str) -> None:
    """GPTQModel's table of model types, read from its source without importing it (the import takes ~10 s)."""
    import importlib.util

    spec = importlib.util.find_spec("gptqmodel")
    table = Path(next(iter(spec.submodule_search_locations))) / "models" / "auto.py" if spec else None
    model_type = config.get("model_type")
    if table is None or not table.is_file() or not model_type:
        return
    if f'"{model_type}"' not in table.read_text(encoding="utf-8"):
        raise BadInput(f"{model_dir / 'config.json'}: model_type '{model_type}' is not supported by GPTQModel's "
                       f"{label} quantizer")


def calibration_windows(tokenizer, path: str | Path | None) -> tuple[list[list[int]], str]:
    """Token windows to calibrate on: the user's file (JSONL of chat rows or {"text"}, or .txt) or the bundled
    default conversations, rendered with the model's chat template."""
    from workbench.export import quality
    from workbench.system.content import content_dir

    source = Path(path) if path else content_dir("exporters") / DEFAULT_CALIBRATION
    texts = quality.load_heldout_texts(source, tokenizer)
    windows = quality.token_windows(tokenizer, texts, CALIBRATION_WINDOW, CALIBRATION_MAX_TOKENS)
    return windows, str(source)


def artifact_name(ckpt: Checkpoint, method: str, quant: str) -> str:
    return f"{artifact_stem(ckpt)}-{method.upper()}-{quant}"


def export_hf_quant(method: str, ckpt: Checkpoint, out_dir: Path, quants: list[str] | str | None = None, *,
                    calibration: str | Path | None = None, progress: bool = True, **options) -> list[Checkpoint]:
    """Quantize an HF model (or an adapter, merged first) with GPTQModel; one model folder per quant in out_dir."""

    refuse_options(METHODS[method]["label"], options)
    names = check(method, ckpt, quants)
    if calibration is not None and not Path(calibration).is_file():
        raise BadInput(f"calibration data '{calibration}': no such file")
    return build_staged(out_dir, progress,
                        lambda out, work, steps: _build(method, ckpt, out, work, names, calibration, steps))


def refuse_options(label: str, options: dict) -> None:
    """Options of other formats (the CLI passes --keep-f16 always, --imatrix-data when given) must not be
    silently ignored."""
    given = [k for k, v in options.items() if v not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise BadInput(f"{flag} does not apply to {label} export")


def _build(method: str, ckpt: Checkpoint, out: Path, work: Path, names: list[str], calibration,
           steps) -> list[Checkpoint]:
    from workbench.runtimes.hf import load_tokenizer

    source, merged = export_source(ckpt, work, steps)
    config = read_config(source.path)
    specs = {s.name: s for s in parse_quants(method, names, config, source.path / "config.json")}
    with steps.step("tokenize calibration data"):
        windows, cal_source = calibration_windows(load_tokenizer(source), calibration)
    cal_file = work / "calibration.json"
    cal_file.write_text(json.dumps(windows))
    cal_info = {"source": cal_source, "samples": len(windows), "tokens": sum(map(len, windows)),
                "sha": sha256_file(cal_file)}
    version = _version("gptqmodel")
    artifacts = []
    for name, spec in specs.items():
        target = out / artifact_name(ckpt, method, name)
        log = work / f"{name}.log"
        started = time.monotonic()
        steps.note(f"{METHODS[method]['label']} {name}: {TOOL}'s log will be {target.name}/quantize.log")
        with steps.step(f"{METHODS[method]['label']} {name} ({TOOL} {version})") as show:
            run_quantizer(method, spec, source.path, target, cal_file, log, show)
        seconds = round(time.monotonic() - started, 2)
        shutil.copy(log, target / "quantize.log")
        art = Checkpoint(
            path=target, name=target.name, kind="quantized", format=method, base=ckpt.base, sha=weights_sha(target),
            parent={"name": ckpt.name, "path": str(ckpt.path), "sha": ckpt.sha, "kind": ckpt.kind, "quant": name,
                    "tool": TOOL, "gptqmodel": version,
                    **merged},
            extra={"size_bytes": folder_bytes(target), "weights_bytes": weights_bytes(target), "bits": spec.bits,
                   "group_size": spec.group_size, "calibration": cal_info, "quantize_seconds": seconds,
                   "quantization_config": _quant_config(target)},
        )
        art.save_meta()
        artifacts.append(art)
    return artifacts


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def weights_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.safetensors"))


def _quant_config(target: Path) -> dict:
    qc = dict(read_config(target).get("quantization_config") or {})
    qc.pop("meta", None)  # the library's run settings (temp paths, thread pools): not what a loader needs
    return qc


def run_quantizer(method: str, spec: QuantSpec, source: Path, target: Path, cal_file: Path, log: Path,
                  show: Callable[[str], None] | None = None) -> None:
    """GPTQModel in a child process; raise with the child's last error line if it fails. show(detail) gets the
    layer it is on, read from its log, while it runs."""
    job = {"method": method, "bits": spec.bits, "group_size": spec.group_size, "source": str(source),
           "target": str(target), "calibration": str(cal_file)}
    job_file = log.with_suffix(".json")
    write_json_atomic(job_file, job)
    env = dict(os.environ)
    if (os.cpu_count() or 1) < 4:  # GPTQModel 7.6 asks for 2 loader threads but grants ~cpu_count/2 workers
        env.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(log, "w") as fh, subprocess.Popen(
            [sys.executable, "-m", "workbench.export.hf_quant", str(job_file)], stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, cwd=log.parent) as proc:  # its logs/ folder lands in cwd
        try:
            while True:
                try:
                    proc.wait(PROGRESS_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if show is not None and (layer := current_layer(log)):
                        show(layer)
        except BaseException:  # Ctrl-C: stop the child before the staging folder it writes into is deleted
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0 or not (target / "config.json").is_file():
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else last_error(log)
        raise EnvironmentProblem(f"{METHODS[method]['label']} {spec.name} with {TOOL} failed: {why}")


def current_layer(log: Path) -> str | None:
    """'layer 8 of 30' from the end of GPTQModel's log ("Quantizing layer 7 of 29": it counts from 0), if there."""
    with open(log, "rb") as fh:
        fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
        tail = fh.read().decode(errors="replace")
    hits = _LAYER.findall(tail)
    return f"layer {int(hits[-1][0]) + 1} of {int(hits[-1][1]) + 1}" if hits else None


def last_error(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    hit = next((ln for ln in reversed(lines) if re.match(r"^\w*(Error|Exception)\b|^\w+\.\w*Error", ln)), None)
    return hit or (lines[-1] if lines else "no output")


def _quantize_in_this_process(job: dict) -> None:
    from workbench.system.library_defaults import quiet_library_warnings

    quiet_library_warnings()  # also in a process of its own
    import torch
    from gptqmodel import BACKEND, AWQConfig, GPTQConfig, GPTQModel

    cuda = torch.cuda.is_available()
    if job["method"] == "awq":
        # zero_point=True (sym=False) is AutoAWQ's default and what vLLM's AWQ kernels expect
        config = AWQConfig(bits=job["bits"], group_size=job["group_size"], sym=False, offload_to_disk=False)
        backend = BACKEND.AUTO if cuda else BACKEND.AWQ_TORCH  # AUTO picks a CUDA-only GEMM kernel
    else:
        config = GPTQConfig(bits=job["bits"], group_size=job["group_size"], sym=True, desc_act=False,
                            offload_to_disk=False)
        backend = BACKEND.AUTO
    windows = json.loads(Path(job["calibration"]).read_text())
    calibration = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]
    model = GPTQModel.load(job["source"], config, device="cuda" if cuda else "cpu", dtype=torch.float16)
    model.quantize(calibration, batch_size=4, backend=backend)
    model.save(job["target"])


if __name__ == "__main__":
    _quantize_in_this_process(json.loads(Path(sys.argv[1]).read_text()))

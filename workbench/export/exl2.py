"""EXL2 export through exllamav2's converter (exllamav2.conversion.convert_exl2), one model folder per bits-per-
weight target, all from ONE measurement pass: the converter measures every layer's quantization error once
(`-om measurement.json`, the slow part) and each target then only optimizes and quantizes against it (`-m`).

exllamav2's converter and kernels run on CUDA only: without a CUDA GPU visible to torch, check() refuses with
one line (exit 4) before anything loads. Its extension is JIT-built by torch on first import (minutes, once).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput, EnvironmentProblem, MissingExtra
from workbench.export.source import artifact_stem, build_staged, export_source
from workbench.system.extras import available, require

QUANT_TYPES = ("3.0", "4.0", "4.65", "5.0", "6.0", "8.0")  # common targets; any 2.0-8.0 is accepted
DEFAULT_QUANTS = ["4.0"]
HEAD_BITS = 6  # the converter's default bits for the output head
CALIBRATION_LENGTH = 2048  # the converter's default tokens per calibration row
TOOL = "exllamav2 convert_exl2"
# exllamav2 0.3.2's torch-SDPA attention (its path when neither flash-attn nor xformers is installed) passes no
# mask for a plain causal forward without a cache, so every position also attends to later ones: on an H100 the
# default model's 4.0 bpw file scored perplexity 12.2 against the source's 25.3, KL 1.78. Its matmul path masks
# correctly; this switches to it in the converter (read at config init) and in verification.
NO_SDPA = {"EXLLAMA_NO_SDPA": "1"}
_BPW = re.compile(r"^(\d+(?:\.\d+)?)(?:bpw)?$")


def parse_quants(quants: list[str] | str | None) -> list[str]:
    """`4.0`, `4.65bpw`, `"4,6"` or a list of those -> normalized bits-per-weight strings ("4.0", "4.65")."""
    items = DEFAULT_QUANTS if quants is None else [quants] if isinstance(quants, str) else list(quants)
    names = [part.strip().lower() for item in items for part in str(item).split(",") if part.strip()] or DEFAULT_QUANTS
    out = []
    for name in names:
        m = _BPW.match(name)
        if not m or not 2.0 <= float(m[1]) <= 8.0:
            raise BadInput(f"unknown EXL2 quant '{name}': give bits per weight between 2.0 and 8.0 "
                           f"(e.g. {', '.join(QUANT_TYPES)})")
        value = f"{float(m[1]):g}"
        out.append(value if "." in value else f"{value}.0")
    return list(dict.fromkeys(out))


def cuda_problem() -> str | None:
    """Why EXL2 cannot run here, or None."""
    if not available("torch"):
        return None  # reported as a missing extra
    import torch

    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else " is a CPU-only build")
        return f"EXL2 export needs a CUDA GPU (exllamav2's converter and kernels run only on CUDA); none is visible ({build})"
    return None


def check(ckpt: Checkpoint, quants: list[str] | str | None) -> list[str]:
    """Cheap validation before any model loads; returns the normalized bpw targets."""
    from workbench.export.hf_quant import read_config, source_dir

    names = parse_quants(quants)
    if ckpt.format not in ("hf", "peft"):
        raise BadInput(f"checkpoint '{ckpt.path}': EXL2 export needs an HF model or adapter, not {ckpt.format}")
    model_dir = source_dir(ckpt)
    config = read_config(model_dir)
    if config.get("quantization_config"):
        raise BadInput(f"{model_dir / 'config.json'}: the model is already quantized; export the full-precision model")
    require("torch", "EXL2 export", "eval")
    problem = cuda_problem()
    if problem:
        raise EnvironmentProblem(problem)
    if not available("exllamav2"):
        raise MissingExtra("EXL2 export", "exl2", "exllamav2")
    _check_architecture(config, model_dir)
    return names


def _check_architecture(config: dict, model_dir: Path) -> None:
    """exllamav2's architecture table, read from its source (importing it JIT-builds the CUDA extension)."""
    import importlib.util

    spec = importlib.util.find_spec("exllamav2")
    table = Path(next(iter(spec.submodule_search_locations))) / "architecture.py" if spec else None
    archs = config.get("architectures") or []
    if table is None or not table.is_file() or not archs:
        return
    if f'"{archs[0]}"' not in table.read_text(encoding="utf-8"):
        raise BadInput(f"{model_dir / 'config.json'}: architecture {archs[0]} is not supported by exllamav2")


def artifact_name(ckpt: Checkpoint, bpw: str) -> str:
    return f"{artifact_stem(ckpt)}-EXL2-{bpw}bpw"


def export_exl2(ckpt: Checkpoint, out_dir: Path, quants: list[str] | str | None = None, *, progress: bool = True,
                **options) -> list[Checkpoint]:
    """Measure once, then convert to each bpw target; one model folder per target in out_dir."""
    from workbench.export.hf_quant import refuse_options

    refuse_options("EXL2", options)
    names = check(ckpt, quants)
    return build_staged(out_dir, progress, lambda out, work, steps: _build(ckpt, out, work, names, steps))


def _build(ckpt: Checkpoint, out: Path, work: Path, names: list[str], steps) -> list[Checkpoint]:
    from workbench.export.hf_quant import folder_bytes, weights_bytes

    source, merged = export_source(ckpt, work, steps)
    version = _version()
    src, length = converter_input(source.path, work / "src")
    measurement = out / "measurement.json"  # kept: later targets can reuse it with convert_exl2 -m
    started = time.monotonic()
    with steps.step(f"EXL2 measurement pass ({TOOL} {version}; once for all targets)"):
        convert(["-i", str(src), "-o", str(work / "measure"), "-om", str(measurement), "-ml", str(length)],
                work / "measure.log", expect=measurement)
    measure_seconds = round(time.monotonic() - started, 2)
    artifacts = []
    for bpw in names:
        target = out / artifact_name(ckpt, bpw)
        started = time.monotonic()
        with steps.step(f"EXL2 {bpw} bpw (reusing the measurement)"):
            convert(["-i", str(src), "-o", str(work / f"job-{bpw}"), "-m", str(measurement), "-b", bpw,
                     "-hb", str(HEAD_BITS), "-l", str(length), "-cf", str(target)], work / f"{bpw}.log",
                    expect=target / "config.json")
        shutil.copy(work / f"{bpw}.log", target / "convert.log")
        art = Checkpoint(
            path=target, name=target.name, kind="quantized", format="exl2", base=ckpt.base, sha=weights_sha(target),
            parent={"name": ckpt.name, "path": str(ckpt.path), "sha": ckpt.sha, "kind": ckpt.kind, "quant": bpw,
                    "tool": TOOL, "exllamav2": version, "measurement": measurement.name,
                    **merged},
            extra={"size_bytes": folder_bytes(target), "weights_bytes": weights_bytes(target), "bpw": float(bpw),
                   "head_bits": HEAD_BITS, "calibration": "exllamav2 standard calibration set",
                   "measure_seconds": measure_seconds, "convert_seconds": round(time.monotonic() - started, 2)},
        )
        art.save_meta()
        artifacts.append(art)
    return artifacts


def converter_input(model_dir: Path, folder: Path) -> tuple[Path, int]:
    """The model as exllamav2 0.3.2 reads it: transformers 5 writes RoPE settings under `rope_parameters`, where
    exllamav2 looks for top-level `rope_theta` / `rope_scaling` and otherwise silently assumes theta 10000 (a
    SmolLM2-135M converted that way measured KL 2.5 at 6 bpw). A folder of links to the weights with those keys
    added; the converter copies this config into its output, so the EXL2 folder loads right too. Also the
    calibration length: at most the model's context (longer rows run past its RoPE table)."""
    config = json.loads((model_dir / "config.json").read_text())
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    if "rope_scaling" not in config and rope.get("rope_type", "default") != "default":
        config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    folder.mkdir()
    for item in model_dir.iterdir():
        if item.is_file() and item.name != "config.json":
            (folder / item.name).symlink_to(item.resolve())
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    length = min(CALIBRATION_LENGTH, int(config.get("max_position_embeddings") or CALIBRATION_LENGTH))
    return folder, length


def _version() -> str | None:
    from workbench.export.hf_quant import _version as dist_version

    return dist_version("exllamav2")


def convert(args: list[str], log: Path, *, expect: Path) -> None:
    """Run convert_exl2 in a child process. It exits 0 even on its own errors (lines starting ' ## '), so success
    is the expected output file."""
    with open(log, "w") as fh:
        proc = subprocess.run([sys.executable, "-m", "exllamav2.conversion.convert_exl2", *args], check=False, stdout=fh,
                              stderr=subprocess.STDOUT, env=os.environ | NO_SDPA)
    if proc.returncode != 0 or not expect.exists():
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        hit = next((ln for ln in reversed(lines) if ln.startswith("##") or re.match(r"^\w*(Error|Exception)\b", ln)),
                   lines[-1] if lines else f"exit {proc.returncode}")
        why = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else hit
        raise EnvironmentProblem(f"exllamav2's converter failed: {why}")

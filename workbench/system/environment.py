"""What a run records about the machine and library versions (read without importing the libraries)."""

import importlib.metadata
import os
import platform
import sys

TRACKED = ["ckpt-workbench", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "lm-eval",
           "llama-cpp-python", "gguf", "streamlit", "plotly"]


def versions(dists: list[str] = TRACKED) -> dict[str, str | None]:
    out = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def hardware() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # only report CUDA when torch is already loaded for the work itself
    if torch is not None:
        info["cuda"] = bool(torch.cuda.is_available())
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    return info

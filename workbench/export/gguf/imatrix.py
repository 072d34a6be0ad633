"""An importance matrix for llama.cpp's quantizer, computed from the user's own data.

llama-cpp-python ships no llama-imatrix tool, but llama_model_quantize takes the matrix itself through
llama_model_quantize_params.imatrix ({tensor name, float*, size} entries, NULL-terminated). What llama-imatrix
collects is, for every matrix multiplication, the mean over tokens of the squared input activation of each
input column; the same statistic is gathered here with forward hooks on the source model's Linear layers under
transformers, and the layers are named the GGUF way with gguf-py's own tensor-name map.
"""

import ctypes
from pathlib import Path

from workbench.errors import BadInput
from workbench.system.extras import require

DEFAULT_WINDOW = 512


def compute_imatrix(model_dir: Path, data: Path, arch: str, *, window: int = DEFAULT_WINDOW,
                    max_tokens: int | None = 16384, progress=None) -> tuple[dict, dict]:
    """{gguf tensor name: mean squared input activation per column} over the windows of `data`, and a summary."""
    import numpy as np

    from workbench.export import quality

    torch = require("torch", "Importance matrix", "eval")
    transformers = require("transformers", "Importance matrix", "eval")
    gguf = require("gguf", "Importance matrix (GGUF tensor names)", "gguf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    windows = quality.token_windows(tokenizer, quality.load_heldout_texts(data, tokenizer), window, max_tokens)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    archs = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in archs:
        raise BadInput(f"importance matrix: no GGUF tensor-name map for architecture '{arch}'")
    names = gguf.get_tensor_name_map(archs[arch], model.config.num_hidden_layers)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook(name):
        def collect(module, inputs, output):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return collect

    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            gguf_name = names.get_name(module_name + ".weight", try_suffixes=(".weight",))
            if gguf_name:
                hooks.append(module.register_forward_hook(hook(gguf_name)))
    if not hooks:
        raise BadInput(f"importance matrix: none of {model_dir}'s linear layers map to GGUF tensor names")
    try:
        with torch.no_grad():
            for ids in windows:
                model(torch.tensor([ids]))
                if progress:
                    progress(1)
    finally:
        for h in hooks:
            h.remove()
    matrix = {name: (sums[name] / counts[name]).numpy().astype(np.float32) for name in sums}
    summary = {"data": str(data), "tokens": sum(len(w) for w in windows), "windows": len(windows),
               "tensors": len(matrix), "method": "mean squared Linear input per column (transformers hooks)"}
    return matrix, summary


class ImatrixParam:
    """The NULL-terminated llama_model_imatrix_data array for llama_model_quantize_params.imatrix; keeps the
    buffers alive as long as it lives."""

    def __init__(self, matrix: dict):
        import numpy as np

        llama_cpp = require("llama_cpp", "GGUF quantization with an importance matrix", "gguf")
        self._arrays = [np.ascontiguousarray(v, dtype=np.float32) for v in matrix.values()]
        self._names = [k.encode() for k in matrix]
        entries = (llama_cpp.llama_model_imatrix_data * (len(matrix) + 1))()
        for i, (name, arr) in enumerate(zip(self._names, self._arrays)):
            entries[i].name = name
            entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = arr.size
        entries[len(matrix)].name = None
        self.entries = entries

    def pointer(self):
        return ctypes.cast(self.entries, ctypes.POINTER(type(self.entries[0])))

"""MLX-LM and torchtune LoRA adapters converted to PEFT, and checked by logits before anything is written.

The conversion maps key names and layouts to PEFT's (`base_model.model.<module>.lora_A.weight` [r, in],
`lora_B.weight` [out, r], scaling lora_alpha / r). The check does not trust it: the adapter's effect is computed
from the source weights by the source trainer's own formula (forward hooks on the base's Linear modules, no PEFT)
and PEFT's forward of the converted adapter must match it on a probe batch. The output is a PEFT folder with
lineage `imported_from: {format, trainer, path, sha}`; it is built in a staging folder and published only when
the check passes.

- MLX-LM (mlx_lm/tuner/lora.py LoRALinear): y = linear(x) + scale * (x @ lora_a) @ lora_b, lora_a (in, r),
  lora_b (r, out); module names are the HF ones (`model.layers.N.self_attn.q_proj`). PEFT: A = lora_a.T,
  B = lora_b.T, lora_alpha = scale * r.
- torchtune (torchtune/modules/peft/lora.py): y = linear(x) + (alpha / r) * lora_b(lora_a(x)), with torchtune's
  module names (attn.q_proj, attn.output_proj, mlp.w1/w2/w3, output) and its q/k rows in Meta's rotary layout
  (torchtune's HF checkpointer permutes them on load): lora_b of q_proj/k_proj is permuted back, as torchtune's
  own tune_to_peft_adapter_weights does. alpha is not in the .pt file: adapter_config.json, or --lora-alpha.
"""

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from workbench.checkpoints.adapter_formats import AdapterFormat, detect, load_torchtune_state
from workbench.checkpoints.checkpoint import Checkpoint, weights_sha
from workbench.errors import BadInput
from workbench.system.console import library_stdout_to_stderr
from workbench.system.extras import peft_without_gptqmodel, require

PEFT_PREFIX = "base_model.model."
DEFAULT_TOLERANCE = 1e-3  # float32; the difference is the rounding of reordered matmuls
_TORCHTUNE_MODULES = {"attn.q_proj": "self_attn.q_proj", "attn.k_proj": "self_attn.k_proj",
                      "attn.v_proj": "self_attn.v_proj", "attn.output_proj": "self_attn.o_proj",
                      "mlp.w1": "mlp.gate_proj", "mlp.w2": "mlp.down_proj", "mlp.w3": "mlp.up_proj"}


@dataclass
class ImportReport:
    max_abs_logit_diff: float  # PEFT's forward of the converted adapter vs the source formula
    adapter_effect: float  # max |logit change| the adapter makes on the base (0: an untrained adapter)
    probe_tokens: int
    tolerance: float
    modules: int


@dataclass
class ImportResult:
    checkpoint: Checkpoint  # the PEFT adapter at its published path, lineage `imported_from`
    check: ImportReport
    detected: AdapterFormat

    def to_dict(self) -> dict:
        return {"adapter": str(self.checkpoint.path), "base": self.checkpoint.base,
                "imported_from": self.checkpoint.parent["imported_from"], "detected": self.detected.to_dict(),
                "check": self.check.__dict__}


@dataclass
class Conversion:
    tensors: dict  # PEFT key -> tensor
    rank: int
    alpha: float
    dropout: float
    modules: list[str]  # base module names
    reference: dict[str, Callable]  # module name -> (input, output) -> output with the adapter, by the source formula


def import_adapter(src: Path, out: Path, *, base: str | None = None, lora_alpha: float | None = None,
                   tolerance: float = DEFAULT_TOLERANCE) -> ImportResult:
    """Convert the MLX-LM or torchtune adapter in `src` into a PEFT adapter in `out` (new or empty), checked by
    logits against the source trainer's formula. base: the base it was trained on (default: the one its
    adapter_config.json names); lora_alpha: torchtune's alpha, when no adapter_config.json gives it."""
    from workbench.checkpoints.resolve import portable_base, resolve_base
    from workbench.store.files import staged_folder
    from workbench.system.output_paths import check_new_folder

    out = Path(out)
    check_new_folder(out)
    fmt = detect(Path(src))
    if fmt.format == "peft":
        raise BadInput(f"adapter '{src}' is already a PEFT adapter ({fmt.trainer or 'trainer unknown'}): use it as "
                       "it is")
    base_ref = base or fmt.base_name
    if not base_ref:
        named = "adapter_config.json 'model'" if fmt.format == "mlx" else "adapter_config.json"
        raise BadInput(f"{fmt.label} adapter '{src}' names no base model ({named}): give it with --base BASE")
    base_ckpt = resolve_base(base_ref, with_sha=True)
    if base_ckpt.kind == "adapter" or base_ckpt.format != "hf":
        raise BadInput(f"base '{base_ref}': must be an HF model folder, not a {base_ckpt.kind} {base_ckpt.format} "
                       "checkpoint")
    with library_stdout_to_stderr():  # banners of the libraries (peft imports GPTQModel's) stay off stdout
        torch = require("torch", "Importing an adapter", "train")
        transformers = require("transformers", "Importing an adapter", "eval")
        peft = require("peft", "Importing an adapter", "train")
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base_ckpt.path), dtype=torch.float32)
        model.eval()
        conversion = (_from_mlx if fmt.format == "mlx" else _from_torchtune)(fmt, model, lora_alpha, torch)
        with staged_folder(out) as build:
            build.mkdir()
            _write_peft(build, fmt, conversion, portable_base(base_ckpt, base_ref), peft)
            report = _check(fmt, model, conversion, build, base_ckpt, tolerance, torch, peft)
            ckpt = Checkpoint(
                path=build, name=out.name, kind="adapter", format="peft", base=portable_base(base_ckpt, base_ref),
                sha=weights_sha(build),
                parent={"imported_from": {"format": fmt.format, "trainer": fmt.trainer,
                                          "path": str(fmt.path.resolve()), "sha": weights_sha(fmt.weights),
                                          "weights": fmt.weights.name},
                        "base": base_ckpt.name, "base_sha": base_ckpt.sha, "import_check": asdict(report)})
            ckpt.save_meta()
    ckpt.path = out.resolve()
    return ImportResult(ckpt, report, fmt)


def _linear(modules: dict, name: str, fmt: AdapterFormat, key: str, torch):
    module = modules.get(name)
    if not isinstance(module, torch.nn.Linear):
        what = "has no such module" if module is None else f"has a {type(module).__name__} there, not a Linear"
        raise BadInput(f"{fmt.label} adapter '{fmt.path}': '{key}' adapts {name}, and the base {what} (an adapter "
                       "for another base?)")
    return module


def _from_mlx(fmt: AdapterFormat, model, lora_alpha, torch) -> Conversion:
    from safetensors.torch import load_file

    params = fmt.config["lora_parameters"]
    state = {k: v.float() for k, v in load_file(str(fmt.weights)).items()}
    try:
        scale, rank = float(params["scale"]), int(params["rank"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{fmt.path / 'adapter_config.json'}: lora_parameters needs a numeric 'rank' and 'scale'"
                       ) from None
    tensors, reference, modules, base_modules = {}, {}, [], dict(model.named_modules())
    for key in sorted(k for k in state if k.endswith(".lora_a")):
        name = key[: -len(".lora_a")]
        a, b = state[key], state.get(f"{name}.lora_b")
        if b is None:
            raise BadInput(f"{fmt.weights}: '{key}' has no lora_b beside it; the adapter file is incomplete")
        linear = _linear(base_modules, name, fmt, key, torch)
        if a.shape != (linear.in_features, rank) or b.shape != (rank, linear.out_features):
            raise BadInput(f"{fmt.weights}: '{name}' has lora_a {tuple(a.shape)} and lora_b {tuple(b.shape)}; rank "
                           f"{rank} on the base's {linear.in_features}->{linear.out_features} needs "
                           f"({linear.in_features}, {rank}) and ({rank}, {linear.out_features})")
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.T.contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b.T.contiguous()
        reference[name] = lambda x, y, a=a, b=b: y + scale * ((x @ a) @ b)
        modules.append(name)
    if len(modules) * 2 != len(state):
        raise BadInput(f"{fmt.weights}: some lora_b matrices have no lora_a")
    return Conversion(tensors, rank, scale * rank, float(params.get("dropout", 0.0)), modules, reference)


def _from_torchtune(fmt: AdapterFormat, model, lora_alpha, torch) -> Conversion:
    state = {k: v.float() for k, v in load_torchtune_state(fmt.weights).items()}
    alpha = lora_alpha if lora_alpha is not None else fmt.config.get("lora_alpha")
    if alpha is None:
        raise BadInput(f"torchtune adapter '{fmt.path}': {fmt.weights.name} does not hold LoRA's alpha and no "
                       "adapter_config.json gives it: give --lora-alpha (the recipe's model.lora_alpha)")
    config = model.config
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tensors, reference, modules, ranks, base_modules = {}, {}, [], set(), dict(model.named_modules())
    for key in sorted(k for k in state if k.endswith(".lora_a.weight")):
        tt_name = key[: -len(".lora_a.weight")]
        a, b = state[key], state.get(f"{tt_name}.lora_b.weight")
        if b is None:
            raise BadInput(f"{fmt.weights}: '{key}' has no lora_b beside it; the adapter file is incomplete")
        name = _hf_module(tt_name, fmt)
        linear = _linear(base_modules, name, fmt, key, torch)
        rank = a.shape[0]
        if a.shape != (rank, linear.in_features) or b.shape != (linear.out_features, rank):
            raise BadInput(f"{fmt.weights}: '{tt_name}' has lora_a {tuple(a.shape)} and lora_b {tuple(b.shape)}; the "
                           f"base's {name} is {linear.in_features}->{linear.out_features}")
        ranks.add(rank)
        n = heads if name.endswith("q_proj") else kv_heads if name.endswith("k_proj") else None
        b_hf = b if n is None else b.view(n, head_dim // 2, 2, rank).transpose(1, 2).reshape(n * head_dim, rank)
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = b_hf.contiguous()
        rows = None if n is None else _meta_row_order(n, head_dim, torch)
        reference[name] = lambda x, y, a=a, b=b, rows=rows, s=float(alpha) / rank: _add_rows(
            y, s * ((x @ a.T) @ b.T), rows)
        modules.append(name)
    if len(ranks) != 1:
        raise BadInput(f"{fmt.weights}: {'no LoRA matrices' if not ranks else f'ranks differ {sorted(ranks)}'}")
    if len(modules) * 2 != len(state):
        raise BadInput(f"{fmt.weights}: some lora_b matrices have no lora_a")
    return Conversion(tensors, ranks.pop(), float(alpha), float(fmt.config.get("lora_dropout", 0.0)), modules,
                      reference)


def _hf_module(tt_name: str, fmt: AdapterFormat) -> str:
    if tt_name == "output":
        return "lm_head"
    layer, _, rest = tt_name.partition(".")[2].partition(".")
    if rest not in _TORCHTUNE_MODULES:
        raise BadInput(f"{fmt.weights}: torchtune module '{tt_name}' has no known HF counterpart")
    return f"model.layers.{layer}.{_TORCHTUNE_MODULES[rest]}"


def _meta_row_order(n_heads: int, head_dim: int, torch):
    """Row k of a torchtune q/k projection is row rows[k] of the HF one: torchtune's hf_to_tune permutation
    (view(n_heads, 2, head_dim // 2, dim).transpose(1, 2)) applied to the row indices."""
    return torch.arange(n_heads * head_dim).view(n_heads, 2, head_dim // 2).transpose(1, 2).reshape(-1)


def _add_rows(y, delta, rows):
    if rows is None:
        return y + delta
    y = y.clone()
    y[..., rows] += delta
    return y


def _write_peft(folder: Path, fmt: AdapterFormat, conversion: Conversion, base_ref: str, peft) -> None:
    from safetensors.torch import save_file

    from workbench.checkpoints.checkpoint import TOKENIZER_FILES

    pattern = "|".join(m.replace(".", r"\.") for m in conversion.modules)  # PEFT re.fullmatch-es a string
    peft.LoraConfig(r=conversion.rank, lora_alpha=conversion.alpha, lora_dropout=conversion.dropout,
                    target_modules=f"^({pattern})$", task_type="CAUSAL_LM", bias="none",
                    base_model_name_or_path=base_ref).save_pretrained(str(folder))
    save_file(conversion.tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:  # torchtune copies the base's tokenizer beside its adapter
        if (fmt.path / name).is_file():
            shutil.copyfile(fmt.path / name, folder / name)


def _check(fmt: AdapterFormat, model, conversion: Conversion, folder: Path, base: Checkpoint, tolerance: float,
           torch, peft) -> ImportReport:
    from workbench.merge.probe import probe
    from workbench.runtimes.hf import load_tokenizer_from

    tokenizer = load_tokenizer_from(folder if (folder / "tokenizer_config.json").exists() else base.path)
    tokenizer.padding_side = "right"
    plain, n_tokens, _ = probe(model, tokenizer, torch)
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(lambda _m, args, y, f=f: f(args[0], y))
             for name, f in conversion.reference.items()]
    try:
        reference, _, _ = probe(model, tokenizer, torch)
    finally:
        for hook in hooks:
            hook.remove()
    with peft_without_gptqmodel():
        converted, _, _ = probe(peft.PeftModel.from_pretrained(model, str(folder)), tokenizer, torch)
    report = ImportReport(max_abs_logit_diff=float((reference - converted).abs().max()),
                          adapter_effect=float((reference - plain).abs().max()), probe_tokens=n_tokens,
                          tolerance=tolerance, modules=len(conversion.modules))
    if not report.max_abs_logit_diff <= tolerance:
        raise BadInput(f"import check failed for {fmt.label} adapter '{fmt.path}': the PEFT conversion's logits "
                       f"differ from the {fmt.label} formula's by {report.max_abs_logit_diff:.3g} > {tolerance:g}")
    return report


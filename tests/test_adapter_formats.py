"""Adapters from other trainers: each format built here as its trainer writes it (PEFT from TRL, Unsloth, Axolotl,
LLaMA-Factory; MLX-LM; torchtune), detected, imported where it is not PEFT, merged with `wb merge` and checked
against that trainer's own arithmetic; an unsure folder is a one-line error."""

import json
from pathlib import Path

import pytest
import torch
from hostile_support import run_cli
from safetensors.torch import load_file, save_file

from workbench.checkpoints.adapter_formats import detect
from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput

ADDED_TOKENS = ["<|tool_call|>", "<|tool_result|>"]


def _peft_adapter(base: Path, out: Path, *, card: str | None = None, added_tokens=(), **lora) -> Path:
    """A PEFT adapter as TRL, Unsloth, Axolotl and LLaMA-Factory save it (they all call PEFT's save_pretrained);
    `added_tokens`: the tokenizer grown and the embeddings resized first, as those trainers do for new tokens."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if added_tokens:
        tokenizer.add_tokens(list(added_tokens))
        model.resize_token_embeddings(len(tokenizer))
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, task_type="CAUSAL_LM", **lora))
    with torch.no_grad():  # a trained modules_to_save copy differs from the base's tensor
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)
    peft_model.save_pretrained(str(out))
    if added_tokens:
        tokenizer.save_pretrained(str(out))
    if card:
        (out / "README.md").write_text(card)
    return out


def _set_config(adapter: Path, **changes) -> None:
    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def _mlx_adapter(base: Path, out: Path, *, rank=4, scale=20.0, model_ref=None) -> tuple[Path, dict]:
    """MLX-LM's files: adapters.safetensors (lora_a (in, r), lora_b (r, out), HF module names) and its
    adapter_config.json (the training arguments, lora_parameters among them)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(base))
    hidden, kv = config.hidden_size, config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    gen = torch.Generator().manual_seed(2)
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for module, out_dim in (("self_attn.q_proj", hidden), ("self_attn.v_proj", kv)):
            key = f"model.layers.{layer}.{module}"
            tensors[f"{key}.lora_a"] = torch.randn(hidden, rank, generator=gen) / hidden ** 0.5
            tensors[f"{key}.lora_b"] = torch.randn(rank, out_dim, generator=gen) * 0.01
    out.mkdir(parents=True)
    save_file(tensors, str(out / "adapters.safetensors"), metadata={"format": "mlx"})
    (out / "adapter_config.json").write_text(json.dumps({
        "model": str(model_ref or base), "fine_tune_type": "lora", "num_layers": config.num_hidden_layers,
        "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0,
                            "keys": ["self_attn.q_proj", "self_attn.v_proj"]},
        "train": True, "data": "data/", "batch_size": 4, "iters": 100, "learning_rate": 1e-5,
        "adapter_path": "adapters", "max_seq_length": 2048, "grad_checkpoint": False, "seed": 0}))
    return out, tensors


def _torchtune_adapter(base: Path, out: Path, *, rank=4, alpha=8.0, with_config=True) -> tuple[Path, dict]:
    """torchtune's adapter_model.pt (its key names; q/k in its rotary row layout) and the PEFT-shaped
    adapter_config.json it writes beside it, without PEFT weights (its Meta checkpointer's output)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(base))
    head_dim = config.hidden_size // config.num_attention_heads
    shapes = {"attn.q_proj": (config.hidden_size, config.num_attention_heads * head_dim),
              "attn.k_proj": (config.hidden_size, config.num_key_value_heads * head_dim),
              "attn.output_proj": (config.num_attention_heads * head_dim, config.hidden_size),
              "mlp.w1": (config.hidden_size, config.intermediate_size),
              "mlp.w2": (config.intermediate_size, config.hidden_size)}
    gen = torch.Generator().manual_seed(3)
    state = {}
    for layer in range(config.num_hidden_layers):
        for module, (fan_in, fan_out) in shapes.items():
            key = f"layers.{layer}.{module}"
            state[f"{key}.lora_a.weight"] = torch.randn(rank, fan_in, generator=gen) / fan_in ** 0.5
            state[f"{key}.lora_b.weight"] = torch.randn(fan_out, rank, generator=gen) * 0.02
    out.mkdir(parents=True)
    torch.save(state, out / "adapter_model.pt")
    if with_config:
        (out / "adapter_config.json").write_text(json.dumps({
            "r": rank, "lora_alpha": alpha, "target_modules": ["q_proj", "k_proj", "o_proj", "gate_proj", "down_proj"],
            "peft_type": "LORA"}))
    return out, state


def _weights(folder: Path) -> dict:
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def _logits(folder: Path, ids) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(str(folder))(ids).logits


# --- PEFT adapters from TRL, Unsloth, Axolotl, LLaMA-Factory ----------------------------------------------------

TRL_CARD = "---\nbase_model: x\nlibrary_name: peft\ntags:\n- generated_from_trainer\n- trl\n- sft\n---\nTrained with SFT."


def test_trl_adapter_is_peft_and_merges(tmp_path, tiny_model_dir, store_dir, capsys):
    adapter = _peft_adapter(tiny_model_dir, tmp_path / "trl", card=TRL_CARD, r=4, lora_alpha=8,
                            target_modules=["q_proj", "v_proj"])
    fmt = detect(adapter)
    assert (fmt.format, fmt.trainer) == ("peft", "trl")
    assert resolve_checkpoint(adapter).extra["adapter_format"]["trainer"] == "trl"
    result = run_cli(["merge", adapter, "-o", tmp_path / "merged", "--json"], capsys)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["max_abs_logit_diff"] < 1e-4


def test_unsloth_bnb_4bit_base_goes_to_the_full_precision_base(tmp_path, tiny_model_dir, store_dir, capsys):
    adapter = _peft_adapter(tiny_model_dir, tmp_path / "unsloth", card="---\ntags:\n- unsloth\n- trl\n---\n", r=4,
                            lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["embed_tokens"])
    _set_config(adapter, base_model_name_or_path="unsloth/tiny-llama-bnb-4bit")
    fmt = detect(adapter)
    assert (fmt.format, fmt.trainer) == ("peft", "unsloth")
    ckpt = resolve_checkpoint(adapter)
    assert ckpt.base == "unsloth/tiny-llama"  # the full-precision repo the name stands for
    assert ckpt.parent["trained_on"] == "unsloth/tiny-llama-bnb-4bit"
    assert ckpt.parent["quantization"]["type"] == "nf4" and ckpt.parent["quantization"]["library"] == "bitsandbytes"
    # not in the hub cache here: one line naming both names and --base
    result = run_cli(["merge", adapter, "-o", tmp_path / "m0"], capsys)
    assert result.code == 3 and "unsloth/tiny-llama" in result.stderr and "--base" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli(["merge", adapter, "-o", tmp_path / "merged", "--base", tiny_model_dir], capsys)
    assert result.code == 0, result.stderr
    meta = json.loads((tmp_path / "merged" / "wb_checkpoint.json").read_text())
    assert meta["parent"]["trained_on_quantization"]["type"] == "nf4"
    # modules_to_save: the trained embed_tokens copy is the merged model's embedding
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    assert torch.equal(_weights(tmp_path / "merged")["model.embed_tokens.weight"],
                       saved["base_model.model.model.embed_tokens.weight"])


@pytest.mark.parametrize("trainer", ["axolotl", "llama-factory"])
def test_resized_embeddings_with_added_tokens(tmp_path, tiny_model_dir, store_dir, capsys, trainer):
    from transformers import AutoTokenizer

    card = "---\ntags:\n- axolotl\n- generated_from_trainer\n---\n[Built with Axolotl]" if trainer == "axolotl" else None
    adapter = _peft_adapter(tiny_model_dir, tmp_path / trainer, card=card, added_tokens=ADDED_TOKENS, r=4,
                            lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["embed_tokens", "lm_head"])
    if trainer == "llama-factory":
        (adapter / "trainer_log.jsonl").write_text('{"current_steps": 10, "loss": 1.2}\n')
    assert detect(adapter).trainer == trainer
    base_vocab = len(AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    result = run_cli(["merge", adapter, "-o", tmp_path / "merged", "--json"], capsys)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["max_abs_logit_diff"] < 1e-4  # in memory: base resized, then PEFT's merge
    merged = tmp_path / "merged"
    assert json.loads((merged / "config.json").read_text())["vocab_size"] == base_vocab + len(ADDED_TOKENS)
    tokenizer = AutoTokenizer.from_pretrained(str(merged))  # the adapter's tokenizer, with the added tokens
    assert len(tokenizer) == base_vocab + len(ADDED_TOKENS)
    new_id = tokenizer.convert_tokens_to_ids(ADDED_TOKENS[0])
    assert new_id >= base_vocab
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    weights = _weights(merged)
    assert torch.equal(weights["model.embed_tokens.weight"], saved["base_model.model.model.embed_tokens.weight"])
    assert torch.equal(weights["lm_head.weight"], saved["base_model.model.lm_head.weight"])  # untied by the merge


def test_missing_base_needs_base_option(tmp_path, tiny_model_dir, store_dir, capsys):
    adapter = _peft_adapter(tiny_model_dir, tmp_path / "nobase", r=4, lora_alpha=8, target_modules=["q_proj"])
    _set_config(adapter, base_model_name_or_path=None)
    result = run_cli(["merge", adapter, "-o", tmp_path / "m0"], capsys)
    assert result.code == 3 and "names no base model" in result.stderr and "--base" in result.stderr
    assert not (tmp_path / "m0").exists()
    result = run_cli(["merge", adapter, "-o", tmp_path / "merged", "--base", tiny_model_dir], capsys)
    assert result.code == 0, result.stderr
    assert (tmp_path / "merged" / "model.safetensors").exists()


# --- MLX-LM ------------------------------------------------------------------------------------------------------

def test_mlx_adapter_is_detected_and_refused_with_the_command(tmp_path, tiny_model_dir, store_dir, capsys):
    src, _ = _mlx_adapter(tiny_model_dir, tmp_path / "mlx")
    fmt = detect(src)
    assert (fmt.format, fmt.trainer, fmt.base_name) == ("mlx", "mlx-lm", str(tiny_model_dir))
    result = run_cli(["merge", src, "-o", tmp_path / "m"], capsys)
    assert result.code == 3 and "MLX-LM adapter" in result.stderr and f"wb import-adapter {src}" in result.stderr


def test_mlx_import_matches_mlx_fuse(tmp_path, tiny_model_dir, store_dir, capsys):
    """The imported adapter, merged, equals MLX-LM's own fuse: W + (scale * lora_b.T) @ lora_a.T."""
    src, tensors = _mlx_adapter(tiny_model_dir, tmp_path / "mlx", scale=20.0)
    result = run_cli(["import-adapter", src, "-o", tmp_path / "peft", "--json"], capsys)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["check"]["max_abs_logit_diff"] < 1e-4 and summary["check"]["adapter_effect"] > 1e-2
    assert summary["imported_from"]["format"] == "mlx" and len(summary["imported_from"]["sha"]) == 64
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 80.0
    assert detect(tmp_path / "peft").format == "peft"
    result = run_cli(["merge", tmp_path / "peft", "-o", tmp_path / "merged"], capsys)
    assert result.code == 0, result.stderr
    base, merged = _weights(tiny_model_dir), _weights(tmp_path / "merged")
    for key in (k for k in tensors if k.endswith(".lora_a")):
        module = key[: -len(".lora_a")]
        fused = base[f"{module}.weight"] + (20.0 * tensors[f"{module}.lora_b"].T) @ tensors[key].T
        torch.testing.assert_close(merged[f"{module}.weight"], fused, rtol=0, atol=1e-6)


def test_import_check_failure_writes_nothing(tmp_path, tiny_model_dir):
    from workbench.merge.adapter_import import import_adapter

    src, _ = _mlx_adapter(tiny_model_dir, tmp_path / "mlx")
    with pytest.raises(BadInput, match="import check failed"):  # no difference passes a negative tolerance
        import_adapter(src, tmp_path / "peft", tolerance=-1.0)
    assert not (tmp_path / "peft").exists() and not list(tmp_path.glob(".peft*"))


# --- torchtune ----------------------------------------------------------------------------------------------------

def _torchtune_permute(w, n_heads):
    """torchtune's hf_to_tune row permutation of q/k (convert_weights._permute) and its inverse (tune_to_hf)."""
    out_dim, dim = w.shape
    head_dim = out_dim // n_heads
    return w.view(n_heads, 2, head_dim // 2, dim).transpose(1, 2).reshape(out_dim, dim)


def _torchtune_unpermute(w, n_heads):
    out_dim, dim = w.shape
    head_dim = out_dim // n_heads
    return w.view(n_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(out_dim, dim)


def test_torchtune_import_matches_merging_in_torchtunes_layout(tmp_path, tiny_model_dir, store_dir, capsys):
    """Merged in torchtune's own weight space (HF weights permuted as its checkpointer loads them, W + alpha/r B A,
    permuted back as it saves them), the result equals the import + wb merge."""
    from transformers import AutoConfig

    src, state = _torchtune_adapter(tiny_model_dir, tmp_path / "tt", rank=4, alpha=8.0)
    fmt = detect(src)
    assert (fmt.format, fmt.trainer) == ("torchtune", "torchtune")
    result = run_cli(["import-adapter", src, "-o", tmp_path / "peft", "--base", tiny_model_dir, "--json"], capsys)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["check"]["max_abs_logit_diff"] < 1e-4
    result = run_cli(["merge", tmp_path / "peft", "-o", tmp_path / "merged"], capsys)
    assert result.code == 0, result.stderr
    config = AutoConfig.from_pretrained(str(tiny_model_dir))
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    names = {"attn.q_proj": "self_attn.q_proj", "attn.k_proj": "self_attn.k_proj",
             "attn.output_proj": "self_attn.o_proj", "mlp.w1": "mlp.gate_proj", "mlp.w2": "mlp.down_proj"}
    base, merged = _weights(tiny_model_dir), _weights(tmp_path / "merged")
    for key in (k for k in state if k.endswith(".lora_a.weight")):
        tt = key[: -len(".lora_a.weight")]
        layer, module = tt.split(".")[1], tt.split(".", 2)[2]
        hf = f"model.layers.{layer}.{names[module]}.weight"
        n = heads.get(names[module].split(".")[-1])
        w = base[hf] if n is None else _torchtune_permute(base[hf], n)
        w = w + (8.0 / 4) * state[f"{tt}.lora_b.weight"] @ state[key]
        expected = w if n is None else _torchtune_unpermute(w, n)
        torch.testing.assert_close(merged[hf], expected, rtol=0, atol=1e-6)


def test_torchtune_without_config_needs_lora_alpha(tmp_path, tiny_model_dir, store_dir, capsys):
    src, _ = _torchtune_adapter(tiny_model_dir, tmp_path / "tt", with_config=False)
    result = run_cli(["import-adapter", src, "-o", tmp_path / "p0", "--base", tiny_model_dir], capsys)
    assert result.code == 3 and "--lora-alpha" in result.stderr
    result = run_cli(["import-adapter", src, "-o", tmp_path / "peft", "--base", tiny_model_dir, "--lora-alpha", "8"],
                     capsys)
    assert result.code == 0, result.stderr
    meta = json.loads((tmp_path / "peft" / "wb_checkpoint.json").read_text())
    assert meta["parent"]["imported_from"]["trainer"] == "torchtune" and meta["kind"] == "adapter"


def test_torchtune_folder_with_peft_files_is_peft(tmp_path, tiny_model_dir):
    """Recent torchtune writes PEFT's adapter_model.safetensors beside its own .pt: that folder is PEFT."""
    adapter = _peft_adapter(tiny_model_dir, tmp_path / "tt", r=4, lora_alpha=8, target_modules=["q_proj"])
    _torchtune_adapter(tiny_model_dir, tmp_path / "ttpt")
    (tmp_path / "ttpt" / "adapter_model.pt").rename(adapter / "adapter_model.pt")
    fmt = detect(adapter)
    assert (fmt.format, fmt.trainer) == ("peft", "torchtune")


# --- unsure -------------------------------------------------------------------------------------------------------

def test_unsure_formats_are_one_line_errors(tmp_path, tiny_model_dir, store_dir, capsys):
    neither = _peft_adapter(tiny_model_dir, tmp_path / "neither", r=4, lora_alpha=8, target_modules=["q_proj"])
    _set_config(neither, peft_type=None)
    result = run_cli(["merge", neither, "-o", tmp_path / "m"], capsys)
    assert result.code == 3 and "neither PEFT's (no 'peft_type') nor MLX-LM's (no 'lora_parameters')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    mlx_no_config, _ = _mlx_adapter(tiny_model_dir, tmp_path / "mlx")
    (mlx_no_config / "adapter_config.json").unlink()
    with pytest.raises(BadInput, match="adapter_config.json is missing: its LoRA scale is unknown"):
        detect(mlx_no_config)
    full, _ = _mlx_adapter(tiny_model_dir, tmp_path / "full")
    _set_config(full, fine_tune_type="full")
    result = run_cli(["import-adapter", full, "-o", tmp_path / "p"], capsys)
    assert result.code == 3 and "fine_tune_type 'full'" in result.stderr
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    with pytest.raises(BadInput, match="neither adapter_model.safetensors nor adapter_model.bin"):
        resolve_checkpoint(no_weights)


# --- the one shape rule (eval's fit check is the merge plan's) ----------------------------------------------------

def test_fit_check_accepts_fan_in_fan_out_and_tied_lm_head(tmp_path, tiny_model_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    from workbench.checkpoints.adapter_fit import check_adapter_fits

    torch.manual_seed(0)
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=64)).save_pretrained(gpt2)
    conv1d = _peft_adapter(gpt2, tmp_path / "conv1d", r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    check_adapter_fits(resolve_checkpoint(conv1d), resolve_checkpoint(gpt2))  # Conv1D: (in, out) weights
    tied = _peft_adapter(tiny_model_dir, tmp_path / "tied", r=4, target_modules=["q_proj", "lm_head"])
    check_adapter_fits(resolve_checkpoint(tied), resolve_checkpoint(tiny_model_dir))
    # ... and still refuses what does not fit: the Llama adapter on GPT-2
    with pytest.raises(BadInput, match="does not fit base"):
        check_adapter_fits(resolve_checkpoint(tied), resolve_checkpoint(gpt2))


# --- on the default model: import, merge, evaluate -------------------------------------------------------------------

DEFAULT_LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])


def _default_model_fixture(fmt: str, base: Path, out: Path) -> tuple[Path, tuple[str, str], list[str]]:
    """(the folder as that trainer leaves it, the (format, trainer) detect must find, extra `wb merge` args)."""
    if fmt == "trl":
        adapter = _peft_adapter(base, out, card=TRL_CARD, **DEFAULT_LORA)
        _set_config(adapter, base_model_name_or_path="default")
        return adapter, ("peft", "trl"), []
    if fmt == "unsloth":
        adapter = _peft_adapter(base, out, card="---\ntags:\n- unsloth\n- trl\n---\n",
                                modules_to_save=["embed_tokens"], **DEFAULT_LORA)
        _set_config(adapter, base_model_name_or_path="unsloth/SmolLM2-135M-Instruct-bnb-4bit")
        return adapter, ("peft", "unsloth"), ["--base", "default"]
    if fmt in ("axolotl", "llama-factory"):
        card = "---\ntags:\n- axolotl\n---\n" if fmt == "axolotl" else None
        adapter = _peft_adapter(base, out, card=card, added_tokens=ADDED_TOKENS,
                                modules_to_save=["embed_tokens", "lm_head"], **DEFAULT_LORA)
        if fmt == "llama-factory":
            (adapter / "trainer_log.jsonl").write_text('{"current_steps": 10, "loss": 1.2}\n')
        _set_config(adapter, base_model_name_or_path="default")
        return adapter, ("peft", fmt), []
    if fmt == "no-base":
        adapter = _peft_adapter(base, out, **DEFAULT_LORA)
        _set_config(adapter, base_model_name_or_path=None)
        return adapter, ("peft", None), ["--base", "default"]
    if fmt == "mlx":
        return _mlx_adapter(base, out, scale=2.0, model_ref="default")[0], ("mlx", "mlx-lm"), []
    return _torchtune_adapter(base, out, rank=4, alpha=8.0)[0], ("torchtune", "torchtune"), ["--base", "default"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["trl", "unsloth", "axolotl", "llama-factory", "no-base", "mlx", "torchtune"])
def test_default_model_adapter_of_each_trainer_is_detected_merged_and_evaluated(tmp_path, default_ckpt, store_dir,
                                                                                 capsys, fmt):
    """The import matrix on the default model: each trainer's folder detected, imported when it is not PEFT
    (checked by logits against the source formula), merged (checked by logits), and the merged model evaluated."""
    src, expected, base_args = _default_model_fixture(fmt, Path(default_ckpt.path), tmp_path / fmt)
    found = detect(src)
    assert (found.format, found.trainer) == expected, found
    adapter = src
    if found.format != "peft":
        refused = run_cli(["merge", src, "-o", tmp_path / "direct"], capsys)  # not behind the user's back
        assert refused.code == 3 and "wb import-adapter" in refused.stderr
        result = run_cli(["import-adapter", src, "-o", tmp_path / "peft", *base_args, "--json"], capsys)
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["check"]["max_abs_logit_diff"] < 1e-3
        adapter, base_args = tmp_path / "peft", []
    elif base_args:  # the base it names is not here (a bnb-4bit repo) or it names none: one line asking for --base
        refused = run_cli(["merge", src, "-o", tmp_path / "m0"], capsys)
        assert refused.code == 3 and "--base" in refused.stderr and not (tmp_path / "m0").exists()
    result = run_cli(["merge", adapter, "-o", tmp_path / "merged", *base_args, "--json"], capsys)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["max_abs_logit_diff"] < 1e-3
    result = run_cli(["eval", tmp_path / "merged", "--suite", "demo", "--no-harness", "--limit", "2", "--json"], capsys)
    assert result.code == 0, result.stderr
    assert {m["metric"] for m in json.loads(result.stdout)["metrics"]} >= {"exact", "json_valid"}

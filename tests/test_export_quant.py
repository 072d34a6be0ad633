"""AWQ / GPTQ export through GPTQModel and EXL2 through exllamav2: produced, reloaded the way they are served,
and measured against the source (perplexity, KL, top-1, smoke chats)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput, EnvironmentProblem
from workbench.system.extras import available


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_gptqmodel = pytest.mark.skipif(not available("gptqmodel"),
                                     reason="needs gptqmodel (pip install 'ckpt-workbench[gptq]')")


def wb(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "workbench", *args], check=False, capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(res, code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_model_dir):
    return resolve_checkpoint(tiny_model_dir)


def _assert_measured(entry: dict, min_top1: float = 0.5) -> None:
    held = entry["heldout"]
    assert held["n_tokens"] > 100
    assert math.isfinite(entry["perplexity"]) and math.isfinite(entry["source_perplexity"])
    assert 0.0 <= entry["mean_kl"] < 0.5, entry["mean_kl"]
    assert min_top1 < entry["top1_agreement"] <= 1.0, entry["top1_agreement"]
    assert entry["smoke"]["total"] == len(entry["answers"]) > 0
    assert entry["smoke"]["no_leaks"] == entry["smoke"]["total"], entry["smoke"]
    assert entry["tokens_per_second"] > 0


# --- AWQ / GPTQ on CPU -------------------------------------------------------------------------------------------

@needs_gptqmodel
def test_gptq_cli_produces_reloads_measures_and_records(tiny_model_dir, tmp_path, store_dir):
    """`wb export --format gptq`: a folder transformers loads (quantization_config in config.json), verified,
    and stored as an export run linked to its source."""
    out = tmp_path / "gptq"
    res = wb("export", str(tiny_model_dir), "--format", "gptq", "--quant", "w4a16", "-o", str(out), "--json",
             "--store", str(store_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)  # GPTQModel's own output never reaches stdout
    (f,) = summary["files"]
    folder = Path(f["path"])
    assert folder.parent == out.resolve() and folder.name.endswith("-GPTQ-w4a16-g64")  # 64-wide: group 64
    config = json.loads((folder / "config.json").read_text())
    qc = config["quantization_config"]
    assert (qc["quant_method"], qc["bits"], qc["group_size"], qc["desc_act"]) == ("gptq", 4, 64, False)
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert any(k.endswith("q_proj.qweight") for k in keys) and not any(k.endswith("q_proj.weight") for k in keys)
    meta = json.loads((folder / "wb_checkpoint.json").read_text())
    assert (meta["kind"], meta["format"], meta["parent"]["quant"]) == ("quantized", "gptq", "w4a16-g64")
    assert meta["extra"]["calibration"]["source"].endswith("calibration/default.jsonl")
    assert f["size_bytes"] < sum(p.stat().st_size for p in Path(tiny_model_dir).glob("*.safetensors"))
    entry = summary["verify"]["files"][folder.name]
    assert summary["verify"]["loader"].startswith("transformers")
    _assert_measured(entry)

    run_dir = store_dir / "runs" / summary["run_id"]
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["checkpoint"]["sha"] == summary["checkpoint"]["sha"]
    metrics = {m["metric"] for m in json.loads((run_dir / "results.json").read_text())["metrics"]}
    assert {"mean_kl", "top1_agreement", "perplexity", "size_bytes"} <= metrics


def _tiny_llama(out: Path, default_ckpt, *, fp16: bool = False, **shape):
    """A random-weight Llama of the given shape with the default model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    config = LlamaConfig(vocab_size=len(tok), num_hidden_layers=2, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True,
                         **shape)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    (model.to(torch.float16) if fp16 else model).save_pretrained(out)
    tok.save_pretrained(out)
    return resolve_checkpoint(out)


@pytest.fixture(scope="module")
def awq_ckpt(module_tmp, default_ckpt):
    """A 2-layer Llama whose layer outputs are multiples of 64 (AWQ's clip search needs it; conftest's tiny model
    has 32-wide k/v projections), random weights, the default model's tokenizer and chat template."""
    return _tiny_llama(module_tmp("awq-src"), default_ckpt, hidden_size=128, intermediate_size=256,
                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)


@needs_gptqmodel
def test_awq_with_user_calibration_reloads_and_measures(awq_ckpt, tmp_path):
    from workbench.export.hf_quant import export_hf_quant
    from workbench.export.hf_quant_verify import verify_hf_quant

    cal = tmp_path / "cal.jsonl"
    cal.write_text("".join(json.dumps({"text": f"Row {i}: the kettle boiled while the rain began to fall on the "
                                                "roof of the old station, and the trains were late again."}) + "\n"
                           for i in range(60)))
    arts = export_hf_quant("awq", awq_ckpt, tmp_path / "awq", "w4a16-g32", calibration=cal, progress=False)
    (art,) = arts
    qc = json.loads((art.path / "config.json").read_text())["quantization_config"]
    # zero_point=True: the AutoAWQ GEMM layout vLLM's AWQ kernels load
    assert (qc["quant_method"], qc["bits"], qc["group_size"], qc["zero_point"]) == ("awq", 4, 32, True)
    assert art.extra["calibration"]["source"] == str(cal) and art.extra["calibration"]["tokens"] > 500
    assert (art.path / "quantize.log").is_file()
    report = verify_hf_quant(arts, awq_ckpt, max_heldout_tokens=512, smoke_max_tokens=8)
    _assert_measured(report["files"][art.path.name])


def test_quantizer_progress_reads_the_layer_from_gptqmodels_log(tmp_path):
    from workbench.export.hf_quant import current_layer

    log = tmp_path / "w4a16-g64.log"
    log.write_text("INFO  Loading model\n")
    assert current_layer(log) is None
    # GPTQModel 7.6's own progress lines (\r-separated, layers counted from 0), as in a real AWQ run's log
    log.write_text("x" * 5000 + "\rQuantizing layer 6 of 29             [6 of 29] | 0:04:01 / 0:16:18 [7/30]"
                   "\rForward: Layer=`model.layers.7`, subset=2/4, batches=4 Row 0/14"
                   "\rQuantizing layer 7 of 29             [7 of 29] | 0:04:21 / 0:16:18 [8/30] 26.7%\r")
    assert current_layer(log) == "layer 8 of 30"


# --- bad input, before any model loads --------------------------------------------------------------------------

@needs_gptqmodel
@pytest.mark.parametrize("fmt,quant,needle", [
    ("awq", "w8a16", "unknown AWQ quant type 'w8a16'"),
    ("gptq", "int4", "unknown GPTQ quant type 'int4'"),
    ("gptq", "w4a16-g128", "hidden_size = 64 is not divisible by the group size 128"),
    ("awq", "w4a16", "num_key_value_heads * head_dim = 32: AWQ's clip search (GPTQModel) needs"),
])
def test_bad_quant_is_one_line_exit_3(tiny_model_dir, tmp_path, store_dir, fmt, quant, needle):
    out = tmp_path / "out"
    line = _one_line_error(wb("export", str(tiny_model_dir), "--format", fmt, "--quant", quant, "-o", str(out),
                              "--store", str(store_dir)), 3)
    assert needle in line, line
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_calibration_option_is_refused_for_gguf(tiny_model_dir, tmp_path, store_dir):
    line = _one_line_error(wb("export", str(tiny_model_dir), "--format", "gguf", "--calibration", "x.jsonl",
                              "-o", str(tmp_path / "o"), "--store", str(store_dir)), 3)
    assert "--calibration applies to awq and gptq" in line


@needs_gptqmodel
def test_missing_calibration_file_and_quantized_source_are_refused(tiny_ckpt, tmp_path):
    from workbench.export import hf_quant

    with pytest.raises(BadInput, match="calibration data .*: no such file"):
        hf_quant.export_hf_quant("gptq", tiny_ckpt, tmp_path / "o", calibration=tmp_path / "none.jsonl")
    assert not (tmp_path / "o").exists()
    quantized = tmp_path / "q"
    quantized.mkdir()
    config = json.loads((tiny_ckpt.path / "config.json").read_text())
    (quantized / "config.json").write_text(json.dumps(config | {"quantization_config": {"quant_method": "gptq"}}))
    (quantized / "model.safetensors").write_bytes(b"")
    with pytest.raises(BadInput, match="already quantized"):
        hf_quant.check("awq", resolve_checkpoint(quantized, with_sha=False), None)


@needs_gptqmodel
def test_options_of_other_formats_are_refused_not_ignored(tiny_model_dir, tmp_path, store_dir):
    line = _one_line_error(wb("export", str(tiny_model_dir), "--format", "gptq", "--imatrix-data", "x.jsonl",
                              "-o", str(tmp_path / "o"), "--store", str(store_dir)), 3)
    assert "--imatrix-data does not apply to GPTQ export" in line, line
    assert not (tmp_path / "o").exists()


def test_quant_names_resolve_group_from_the_model_widths():
    from workbench.export.hf_quant import parse_quants

    smol = {"hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "head_dim": 64}
    assert [s.name for s in parse_quants("gptq", None, smol, Path("c"))] == ["w4a16-g64"]
    assert [s.name for s in parse_quants("gptq", "W8A16,w4a16-g32", smol, Path("c"))] == ["w8a16-g64", "w4a16-g32"]
    with pytest.raises(BadInput, match="hidden_size = 576 is not divisible by the group size 128"):
        parse_quants("awq", "w4a16-g128", smol, Path("c"))


# --- EXL2 --------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(_cuda(), reason="checks the message on a machine without CUDA; this one has a GPU")
def test_exl2_without_cuda_is_one_line_exit_4(tiny_model_dir, tmp_path, store_dir):
    out = tmp_path / "exl2"
    line = _one_line_error(wb("export", str(tiny_model_dir), "--format", "exl2", "--quant", "4.0", "-o", str(out),
                              "--store", str(store_dir)), 4)
    assert "EXL2 export needs a CUDA GPU" in line, line
    assert not out.exists()


def test_exl2_bpw_names():
    from workbench.export.exl2 import parse_quants

    assert parse_quants(None) == ["4.0"]
    assert parse_quants("4,4.65bpw,6.0") == ["4.0", "4.65", "6.0"]
    with pytest.raises(BadInput, match="between 2.0 and 8.0"):
        parse_quants("9")


@pytest.fixture(scope="module")
def exl2_model(module_tmp, default_ckpt):
    """A 2-layer Llama, 256 wide (exllamav2's kernels want widths in multiples of 128), random weights, the
    default model's tokenizer and chat template."""
    return _tiny_llama(module_tmp("exl2-src"), default_ckpt, fp16=True, hidden_size=256,
                       intermediate_size=768, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=1024)


@pytest.mark.gpu
@pytest.mark.skipif(not available("exllamav2"), reason="needs exllamav2 (pip install 'ckpt-workbench[exl2]')")
@pytest.mark.skipif(not _cuda(), reason="EXL2 needs a CUDA GPU: exllamav2's converter and kernels run only on CUDA")
def test_exl2_two_targets_share_one_measurement_and_are_verified(exl2_model, tmp_path):
    from workbench.export.exl2 import export_exl2
    from workbench.export.exl2_verify import verify_exl2

    out = tmp_path / "exl2"
    arts = export_exl2(exl2_model, out, "4.0,6.0", progress=False)
    assert [a.parent["quant"] for a in arts] == ["4.0", "6.0"]
    assert (out / "measurement.json").is_file()
    for art in arts:
        qc = json.loads((art.path / "config.json").read_text())["quantization_config"]
        assert qc["quant_method"] == "exl2" and qc["bits"] == float(art.parent["quant"]), qc
        assert "Reusing measurement" in (art.path / "convert.log").read_text()
    assert arts[0].extra["size_bytes"] < arts[1].extra["size_bytes"]
    _assert_causal(arts[0].path)
    report = verify_exl2(arts, exl2_model, max_heldout_tokens=512, smoke_max_tokens=8)
    for art in arts:
        # random weights give near-flat next-token distributions, so argmax ties break either way: on an H100 the
        # 4.0 bpw file agreed on 0.49 of 510 tokens (chance: 1/49152)
        _assert_measured(report["files"][art.path.name], min_top1=0.25)


def _assert_causal(path):
    """A position's logits must not change when later tokens do (exllamav2's SDPA path once attended forward)."""
    import torch

    from workbench.export.exl2_verify import exl2_logits_fn, load_exl2

    model = load_exl2(path, 256)
    try:
        run = exl2_logits_fn(model)
        torch.manual_seed(0)
        ids = torch.randint(100, 10_000, (32,)).tolist()
        changed_tail = ids[:16] + [(i + 7) % 10_000 + 100 for i in ids[16:]]
        a, b = run(ids)[:16], run(changed_tail)[:16]
        assert abs(a - b).max() < 1e-2, abs(a - b).max()
    finally:
        model.unload()


def test_exl2_check_refuses_without_cuda_before_loading(tiny_ckpt, monkeypatch):
    import torch

    from workbench.export import exl2

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the machine, not the unit under test
    with pytest.raises(EnvironmentProblem, match="needs a CUDA GPU"):
        exl2.check(tiny_ckpt, "4.0")


def test_exl2_converter_input_bridges_transformers5_rope_settings(tiny_model_dir, tmp_path):
    """exllamav2 0.3.2 reads top-level rope_theta; transformers 5 writes rope_parameters. Without the bridge the
    converter silently used theta 10000 for SmolLM2 (theta 100000): KL 2.5 at 6 bpw on an H100."""
    from workbench.export.exl2 import converter_input

    src = tmp_path / "src"
    src.mkdir()
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    config.pop("rope_theta", None)
    config |= {"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, "max_position_embeddings": 1024}
    (src / "config.json").write_text(json.dumps(config))
    (src / "model.safetensors").write_bytes(b"weights")
    folder, length = converter_input(src, tmp_path / "bridge")
    bridged = json.loads((folder / "config.json").read_text())
    assert bridged["rope_theta"] == 100000.0 and "rope_scaling" not in bridged
    assert (folder / "model.safetensors").read_bytes() == b"weights" and (folder / "model.safetensors").is_symlink()
    assert length == 1024  # calibration rows no longer than the model's context

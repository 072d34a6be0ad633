"""GGUF export through llama.cpp's own converter and quantizer, checked by loading the files back in llama.cpp."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from workbench.checkpoints.resolve import resolve_checkpoint
from workbench.errors import BadInput, EnvironmentProblem


def _llama_cpp_importable() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


needs_llama_cpp = pytest.mark.skipif(not _llama_cpp_importable(),
                                     reason="needs llama-cpp-python (pip install 'ckpt-workbench[gguf]')")

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Color of the sky?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about cats."}],
]


def _no_partials(parent: Path, name: str) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(f".{name}.partial-")]


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model_dir):
    return resolve_checkpoint(tiny_model_dir)


# --- converter extraction -------------------------------------------------------------------------------------

def _fake_sdist(path: Path, version: str) -> Path:
    """An sdist laid out like llama-cpp-python's, with files that must and must not be extracted."""
    top = f"llama_cpp_python-{version}"
    files = {
        "vendor/llama.cpp/convert_hf_to_gguf.py": "print('converter')\n",
        "vendor/llama.cpp/convert_lora_to_gguf.py": "print('lora')\n",
        "vendor/llama.cpp/LICENSE": "MIT\n",
        "vendor/llama.cpp/gguf-py/gguf/__init__.py": "MARK = 'vendored'\n",
        "vendor/llama.cpp/conversion/__init__.py": "TEXT_MODEL_MAP: dict[str, str] = {'LlamaForCausalLM': 'llama'}\n",
        "vendor/llama.cpp/models/templates/chatml.jinja": "{{ messages }}\n",
        "vendor/llama.cpp/models/ggml-vocab-big.gguf": "not wanted\n",
        "vendor/llama.cpp/src/llama.cpp": "not wanted\n",
        "llama_cpp/__init__.py": "not wanted\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_tools_takes_only_the_converter_tree(tmp_path):
    from workbench.runtimes.llamacpp.tools import LlamaTools, extract_tools

    sdist = _fake_sdist(tmp_path / "llama_cpp_python-9.9.9.tar.gz", "9.9.9")
    target = tmp_path / "home" / "llama.cpp" / "9.9.9"
    extract_tools(sdist, target, "9.9.9")
    got = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert got == ["LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py", "convert_lora_to_gguf.py",
                   "gguf-py/gguf/__init__.py", "models/templates/chatml.jinja", "wb_source.json"]
    assert os.listdir(target.parent) == ["9.9.9"]  # no temp folder left behind
    tools = LlamaTools(root=target, version="9.9.9", origin=sdist.name)
    assert tools.supported_architectures() == {"LlamaForCausalLM"}
    # the scripts run with their own gguf-py ahead of PyPI's gguf
    out = subprocess.run([sys.executable, "-c", "import gguf; print(gguf.MARK)"], env=tools.env(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "vendored"


def test_extract_tools_refuses_an_sdist_of_another_version(tmp_path):
    from workbench.runtimes.llamacpp.tools import extract_tools

    sdist = _fake_sdist(tmp_path / "llama_cpp_python-9.9.8.tar.gz", "9.9.8")
    target = tmp_path / "home" / "llama.cpp" / "9.9.9"
    with pytest.raises(EnvironmentProblem, match="llama_cpp_python-9.9.8, but llama-cpp-python 9.9.9 is installed"):
        extract_tools(sdist, target, "9.9.9")
    assert not target.exists() and os.listdir(target.parent) == []


def test_llama_cpp_dir_must_be_a_checkout(tmp_path, monkeypatch):
    from workbench.runtimes.llamacpp.tools import locate_tools

    monkeypatch.setenv("WB_LLAMA_CPP_DIR", str(tmp_path))
    with pytest.raises(EnvironmentProblem, match="not a llama.cpp checkout"):
        locate_tools()


def test_located_tools_match_installed_llama_cpp(llama_tools):
    from workbench.runtimes.llamacpp.tools import installed_version

    assert llama_tools.version == installed_version()
    assert llama_tools.convert_hf.is_file() and llama_tools.convert_lora.is_file()
    assert "LlamaForCausalLM" in llama_tools.supported_architectures()
    out = subprocess.run([sys.executable, "-c", "import gguf; print(gguf.__file__)"], env=llama_tools.env(),
                         capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).is_relative_to(llama_tools.root / "gguf-py")


# --- refusals before any work ---------------------------------------------------------------------------------

def test_unknown_quant_refused_before_any_model_load(tiny_model_dir, tmp_path):
    """In a fresh interpreter: the refusal comes before torch, transformers or llama_cpp are even imported."""
    out = tmp_path / "out"
    code = (
        "import json, sys\n"
        "import workbench\n"
        "from workbench.errors import BadInput\n"
        "try:\n"
        f"    workbench.export({str(tiny_model_dir)!r}, 'gguf', quants=['q8_0', 'Q9'], output={str(out)!r},\n"
        f"                     store={str(tmp_path / 'store')!r})\n"
        "except BadInput as exc:\n"
        "    print(json.dumps({'error': str(exc), 'heavy': [m for m in ('torch', 'transformers', 'llama_cpp')\n"
        "                                                    if m in sys.modules]}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["error"] == "unknown GGUF quant type 'q9' (choose from f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m)"
    assert result["heavy"] == []
    assert not out.exists()


def test_unknown_format_lists_known_ones():
    from workbench.export import get_exporter
    from workbench.export.registry import export_formats

    with pytest.raises(BadInput, match=r"unknown export format 'onnx' \(choose from .*gguf"):
        get_exporter("onnx")
    assert "gguf" in export_formats()


def _bad_corrupt_weights(model_dir: Path, tmp: Path) -> list[str]:
    broken = tmp / "broken"
    shutil.copytree(model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return [str(broken), "-q", "q8_0"]


def _bad_architecture(model_dir: Path, tmp: Path) -> list[str]:
    odd = tmp / "odd"
    shutil.copytree(model_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    return [str(odd), "-q", "q8_0"]


# every third message in another frame: no Ollama template reproduces it
PER_POSITION = ("{% for message in messages %}{% if loop.index0 % 3 == 2 %}{{ '#' + message['role'] + ': ' }}{% else %}"
                "{{ message['role'] + ': ' }}{% endif %}{{ message['content'] + '\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


def _with_template(model_dir: Path, tmp: Path, template: str) -> Path:
    odd = tmp / "per-position"
    shutil.copytree(model_dir, odd)
    (odd / "chat_template.jinja").write_text(template)
    config = json.loads((odd / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (odd / "tokenizer_config.json").write_text(json.dumps(config))
    return odd


def _bad_ollama_template(model_dir: Path, tmp: Path) -> list[str]:
    return [str(_with_template(model_dir, tmp, PER_POSITION)), "-q", "q8_0"]


def _bad_out_not_empty(model_dir: Path, tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("mine")
    return [str(model_dir), "-q", "q8_0"]


BAD_INPUTS = {
    "unknown format": (lambda d, t: [str(d), "--format", "onnx"], 3, "unknown export format 'onnx'"),
    "unknown quant": (lambda d, t: [str(d), "-q", "q3_k_xl"], 3, "unknown GGUF quant type 'q3_k_xl'"),
    "corrupt safetensors": (_bad_corrupt_weights, 3, "broken/model.safetensors: truncated"),  # before any run
    "unsupported architecture": (_bad_architecture, 3, "architecture NoSuchModelForCausalLM is not supported"),
    "no Ollama template": (_bad_ollama_template, 3, "no Ollama bundle can serve its chat template: .*per-position "
                           "logic.*--no-ollama"),
    "output folder not empty": (_bad_out_not_empty, 3, "output folder '.*out' is not empty"),
}


@needs_llama_cpp
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_through_the_cli(case, tiny_model_dir, tmp_path, llama_tools):
    """`wb export` as a user runs it: one line naming the problem, exit 3, no partial artifact."""
    import re

    make, code, message = BAD_INPUTS[case]
    args = make(tiny_model_dir, tmp_path)
    env = dict(os.environ, WB_STORE=str(tmp_path / "store"), TMPDIR=str(tmp_path / "tmp"), COLUMNS="400")
    (tmp_path / "tmp").mkdir()
    before = set(os.listdir(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "workbench", "export", *args, "-o", str(tmp_path / "out"),
                           "--no-verify"], capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert proc.returncode == code, proc.stderr
    assert len(errors) == 1 and re.search(message, errors[0]), proc.stderr
    assert _no_partials(tmp_path, "out")
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == ["keep.txt"]
    assert set(os.listdir(tmp_path)) - before <= {"store"}  # nothing else written beside the output


def test_quant_names_are_normalized():
    from workbench.export.gguf.exporter import parse_quants

    assert parse_quants("Q4_K_M,q8_0") == ["q4_k_m", "q8_0"]
    assert parse_quants(["q8_0", "q8_0 ", "F16"]) == ["q8_0", "f16"]
    assert parse_quants(None) == ["q4_k_m"]


@needs_llama_cpp
def test_non_empty_out_dir_refused_with_nothing_written(tiny_ckpt, tmp_path):
    from workbench.export.gguf.exporter import export_gguf

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(BadInput, match="output folder .* is not empty"):
        export_gguf(tiny_ckpt, out, ["q8_0"], progress=False)
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


@needs_llama_cpp
def test_gguf_input_refused(tmp_path, tiny_ckpt):
    from workbench.export.gguf.exporter import check

    gguf_file = tmp_path / "m.gguf"
    gguf_file.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(BadInput, match="already a GGUF file"):
        check(resolve_checkpoint(gguf_file), ["q8_0"])



def test_checkpoint_without_chat_template_refused(tiny_model_dir, tmp_path):
    from workbench.export.gguf.exporter import check

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match="no chat template"):
        check(resolve_checkpoint(bare), ["q8_0"])


@needs_llama_cpp
def test_runtime_refuses_a_file_that_is_not_gguf(tmp_path):
    from workbench.runtimes.llamacpp import model as llamacpp

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(BadInput, match="not a GGUF file"):
        llamacpp.load_gguf(fake)
    with pytest.raises(BadInput, match="no such file"):
        llamacpp.gguf_metadata(tmp_path / "missing.gguf")

# --- tiny model: fast end to end -------------------------------------------------------------------------------

@needs_llama_cpp
def test_tiny_model_export_q8_0(tiny_model_dir, tmp_path, llama_tools):
    from transformers import AutoTokenizer

    import workbench
    from workbench.runtimes.llamacpp import model as llamacpp

    out = tmp_path / "gguf"
    summary = workbench.export(str(tiny_model_dir), "gguf", quants="q8_0", output=out, keep_f16=True, progress=False,
                               store=tmp_path / "store").to_dict()
    json.dumps(summary)  # JSON-able
    names = sorted(p.name for p in out.iterdir())
    stem = tiny_model_dir.name
    assert names == sorted([f"{stem}-Q8_0.gguf", f"{stem}-Q8_0.gguf.wb.json", f"{stem}-F16.gguf",
                            f"{stem}-F16.gguf.wb.json", f"{stem}-Q8_0.Modelfile", f"{stem}-F16.Modelfile",
                            "README.ollama.md"])
    for f in summary["files"]:  # the Ollama bundle of each file passed its template round trip
        assert f["ollama"]["roundtrip"]["passed"] and f["ollama"]["roundtrip"]["total"] >= 5, f["ollama"]
    assert [f["quant"] for f in summary["files"]] == ["q8_0", "f16"]
    assert all(f["size_bytes"] == Path(f["path"]).stat().st_size for f in summary["files"])
    assert _no_partials(tmp_path, "gguf")

    q8 = out / f"{stem}-Q8_0.gguf"
    ckpt = resolve_checkpoint(q8)
    assert (ckpt.kind, ckpt.format, ckpt.sha) == ("quantized", "gguf", summary["files"][0]["sha"])
    assert ckpt.parent["quant"] == "q8_0" and ckpt.parent["llama_cpp"] == llama_tools.version
    assert ckpt.parent["tool"] == "llama.cpp convert_hf_to_gguf + llama_model_quantize"

    from workbench.chat import format as chat_format

    # the file's own metadata and vocabulary give the same turns as the source's tokenizer
    assert llamacpp.gguf_chat_format(q8) == chat_format.from_tokenizer(
        AutoTokenizer.from_pretrained(str(tiny_model_dir)))
    meta = llamacpp.gguf_metadata(q8)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert meta["architecture"] == "llama" and meta["file_type"] == "Q8_0"
    assert meta["chat_template"] == tok.chat_template
    assert meta["eos_token_id"] == tok.eos_token_id

    verify = summary["verify"]["files"][q8.name]
    print(json.dumps({k: v for k, v in verify.items() if k != "answers"}, indent=1))
    assert verify["prompt_tokens_match"] is True
    assert verify["heldout"]["n_tokens"] == summary["verify"]["heldout"]["tokens"] > 1000
    assert verify["top1_agreement"] > 0.9  # random weights, but q8_0 barely moves the logits
    assert verify["mean_kl"] < 0.01 and verify["perplexity"] > 1000  # random weights: near-uniform over 49k
    smoke = verify["smoke"]
    assert smoke["total"] == 5 and smoke["passed"] == (smoke["stopped"] == smoke["no_leaks"] ==
                                                       smoke["no_invented_turns"] == 5)
    assert summary["seconds"]["export"] > 0




@needs_llama_cpp
def test_no_ollama_exports_without_the_bundle(tiny_model_dir, tmp_path, llama_tools):
    """--no-ollama skips the bundle on purpose: the template no Ollama template reproduces exports, without one."""
    model = _with_template(tiny_model_dir, tmp_path, PER_POSITION)
    env = dict(os.environ, WB_STORE=str(tmp_path / "store"))
    proc = subprocess.run([sys.executable, "-m", "workbench", "export", str(model), "-q", "q8_0", "-o",
                           str(tmp_path / "out"), "--no-verify", "--no-ollama", "--json"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["per-position-Q8_0.gguf",
                                                                   "per-position-Q8_0.gguf.wb.json"]


@needs_llama_cpp
def test_export_verb_json(tiny_model_dir, tmp_path, llama_tools):
    import typer
    from typer.testing import CliRunner

    from workbench.cli import export

    app = typer.Typer()
    export.register(app)
    app.command("noop")(lambda: None)  # a single-command typer app would swallow the verb name
    out = tmp_path / "out"
    data = Path(__file__).resolve().parent.parent / "evals" / "data" / "contacts_train.jsonl"
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "-q", "Q4_K_M", "-o", str(out), "--no-verify",
                                      "--json", "--imatrix-data", str(data)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [Path(f["path"]).name for f in summary["files"]] == [f"{tiny_model_dir.name}-Q4_K_M.gguf"]
    assert summary["verify"] is None and summary["seconds"]["verify"] is None
    # the importance matrix from the data reached llama.cpp's quantizer for every quantized matrix
    imatrix = resolve_checkpoint(out / f"{tiny_model_dir.name}-Q4_K_M.gguf").parent["imatrix"]
    print(f"\nimatrix: {imatrix}")
    assert imatrix["tensors"] == 2 * 7 + 1 and imatrix["tokens"] > 5000  # 7 matrices per layer + output
    assert set(imatrix["missing"]) <= {"token_embd.weight"}  # embeddings are a lookup, not a matmul

@needs_llama_cpp
def test_adapter_is_merged_then_exported(tiny_model_dir, tmp_path, llama_tools):
    """A LoRA adapter is merged into its base first; the GGUF behaves like base + adapter under transformers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import workbench

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(1)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, lora).save_pretrained(str(adapter_dir))

    out = tmp_path / "gguf"
    summary = workbench.export(str(adapter_dir), "gguf", quants=["f16"], output=out, progress=False,
                               store=tmp_path / "store").to_dict()
    assert sorted(p.name for p in out.iterdir()) == ["README.ollama.md", "adapter-F16.Modelfile", "adapter-F16.gguf",
                                                     "adapter-F16.gguf.wb.json"]
    ckpt = resolve_checkpoint(out / "adapter-F16.gguf")
    assert ckpt.parent["kind"] == "adapter" and ckpt.parent["merge_check"]["argmax_agreement"] == 1.0
    verify = summary["verify"]["files"]["adapter-F16.gguf"]
    assert verify["prompt_tokens_match"] is True
    assert verify["top1_agreement"] >= 0.97 and verify["mean_kl"] < 1e-3  # f16 of the merge == base + adapter

@needs_llama_cpp
def test_converter_failure_leaves_nothing(tiny_model_dir, tmp_path, monkeypatch, llama_tools):
    from workbench.export.gguf.exporter import export_gguf

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "out"
    from workbench.runtimes.llamacpp import tools as tools_module

    logs = tmp_path / "logs"
    monkeypatch.setattr(tools_module, "kept_logs_dir", lambda: logs)  # where the log is kept for the user
    with pytest.raises(BadInput, match="llama.cpp's converter .* failed: .*full log: ") as raised:
        export_gguf(resolve_checkpoint(broken), out, ["q8_0"], progress=False)
    assert not out.exists() and _no_partials(tmp_path, "out")
    kept = Path(str(raised.value).rsplit("full log: ", 1)[1].rstrip(")"))
    assert kept.parent == logs and "Traceback" in kept.read_text()


@needs_llama_cpp
def test_interrupt_during_quantize_leaves_nothing(tiny_ckpt, tmp_path, monkeypatch, llama_tools):
    from workbench.export.gguf import exporter as gguf

    def interrupted(src, dst, quant):
        dst.write_bytes(b"GGUF partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf, "quantize", interrupted)  # Ctrl-C arriving mid-quantization
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        gguf.export_gguf(tiny_ckpt, out, ["q8_0"], progress=False)
    assert not out.exists() and _no_partials(tmp_path, "out")


@needs_llama_cpp
def test_unsupported_architecture_refused(tiny_model_dir, tmp_path, llama_tools):
    from workbench.export.gguf.exporter import export_gguf

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    config = json.loads((odd / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(BadInput, match="architecture NoSuchModelForCausalLM is not supported by llama.cpp's conv"):
        export_gguf(resolve_checkpoint(odd), tmp_path / "out", ["q8_0"], progress=False)


# --- the default model: what ships vs what was evaluated --------------------------------------------------------

# default_export (tests/conftest.py): the default model's f16, q8_0 and q4_k_m files, made once per session


@pytest.mark.slow
@needs_llama_cpp
def test_default_model_files_and_chat_template(default_export, default_ckpt):
    from transformers import AutoTokenizer

    from workbench.runtimes.llamacpp import model as llamacpp

    template = AutoTokenizer.from_pretrained(str(default_ckpt.path)).chat_template
    for quant, art in default_export.items():
        meta = llamacpp.gguf_metadata(art.path)
        assert meta["chat_template"] == template, quant
        assert meta["file_type"] == {"q8_0": "Q8_0", "q4_k_m": "Q4_K_M", "f16": "F16"}[quant]
    assert default_export["q4_k_m"].extra["size_bytes"] < default_export["q8_0"].extra["size_bytes"]
    assert default_export["q8_0"].extra["size_bytes"] < default_export["f16"].extra["size_bytes"]


@pytest.mark.slow
@needs_llama_cpp
def test_default_model_k_quant_fallbacks_are_reported(default_export):
    """576 columns are not a multiple of 256, so llama.cpp cannot use K-quants there and falls back."""
    q4 = default_export["q4_k_m"].extra
    print(f"\nq4_k_m: {q4['fallback_summary']}: {q4['fallbacks']}; tensor types {q4['tensor_types']}")
    assert q4["fallbacks"].get("q4_K->q5_0", 0) > 0
    assert sum(q4["fallbacks"].values()) == int(q4["fallback_summary"].split(" of ")[0])
    assert q4["tensor_types"].get("Q5_0", 0) >= q4["fallbacks"]["q4_K->q5_0"]
    assert "fallbacks" not in default_export["q8_0"].extra or not default_export["q8_0"].extra["fallbacks"]


@pytest.mark.slow
@needs_llama_cpp
def test_default_model_prompt_formatting_matches_transformers(default_export, default_ckpt):
    """create_chat_completion must format with the GGUF's own Jinja template, token for token as transformers'
    apply_chat_template does on the source tokenizer (not a chat_format llama-cpp-python guessed)."""
    from workbench.runtimes.hf import HFRuntime
    from workbench.runtimes.llamacpp import model as llamacpp
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    source = HFRuntime(default_ckpt)
    tok = source.tokenizer
    with LlamaCppRuntime(default_export["q8_0"], n_ctx=512) as gguf:
        assert gguf.llm.chat_format == llamacpp.DEFAULT_TEMPLATE
        for messages in CONVERSATIONS:
            ids = gguf.prompt_tokens(messages)
            assert ids == source.prompt_tokens(messages)
            assert tok.decode(ids) == tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@pytest.mark.slow
@needs_llama_cpp
def test_default_model_answers_llama_cpp_vs_transformers(default_export, default_ckpt):
    from workbench.export.gguf.verify import verify_gguf

    report = verify_gguf(list(default_export.values()), default_ckpt, max_tokens=48)
    print()
    for i, prompt in enumerate(report["prompts"]):
        print(f"PROMPT {prompt!r}\n  transformers: {report['source']['answers'][i]!r}")
        for name, r in report["files"].items():
            print(f"  {r['quant']:>7}: {r['answers'][i]!r}")
    for name, r in report["files"].items():
        print(f"{name}: same answers {r['same_answer']}/{len(report['prompts'])}, top-1 agreement {r['top1_agreement']:.3f}, "
              f"mean KL {r['mean_kl']:.4f}")

    by_quant = {r["quant"]: r for r in report["files"].values()}
    assert all(r["prompt_tokens_match"] for r in by_quant.values())
    # f16 is the converter alone: it must reproduce the source almost exactly
    assert by_quant["f16"]["same_answer"] >= 2 and by_quant["f16"]["top1_agreement"] >= 0.97
    assert by_quant["f16"]["mean_kl"] < 1e-3
    # q8_0 should agree closely, teacher-forced on the source's own answers
    assert by_quant["q8_0"]["top1_agreement"] >= 0.9 and by_quant["q8_0"]["mean_kl"] < 0.01
    assert by_quant["q4_k_m"]["top1_agreement"] >= 0.8 and by_quant["q4_k_m"]["mean_kl"] < 0.1
    assert by_quant["q4_k_m"]["mean_kl"] > by_quant["q8_0"]["mean_kl"] > by_quant["f16"]["mean_kl"]



@needs_llama_cpp
def test_adapter_only_gguf_on_its_base(tiny_model_dir, tmp_path, llama_tools):
    """--adapter-gguf: the LoRA as a GGUF adapter (llama.cpp's LoRA converter) + the base as GGUF + a Modelfile
    with FROM base and ADAPTER; base + adapter under llama.cpp behaves like the merged GGUF, and the adapter
    really is applied (the base alone does not)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import workbench
    from workbench.export import quality
    from workbench.export.ollama import bundle as ollama
    from workbench.runtimes.llamacpp import model as llamacpp

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(2)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    adapter_dir = tmp_path / "adapter"
    get_peft_model(base, lora).save_pretrained(str(adapter_dir))

    out = tmp_path / "gguf"
    summary = workbench.export(str(adapter_dir), "gguf", quants=["f16"], output=out, progress=False, adapter_gguf=True,
                               store=tmp_path / "store").to_dict()
    base_file = f"{tiny_model_dir.name}-F16.gguf"
    assert sorted(os.listdir(out)) == sorted([
        "README.ollama.md", "adapter-F16.gguf", "adapter-F16.gguf.wb.json", "adapter-F16.Modelfile",
        base_file, f"{base_file}.wb.json", f"{tiny_model_dir.name}-F16.Modelfile",
        "adapter-LoRA-F16.gguf", "adapter-LoRA-F16.gguf.wb.json", "adapter-LoRA-F16.Modelfile"])
    modelfile = (out / "adapter-LoRA-F16.Modelfile").read_text()
    assert f"\nFROM ./{base_file}\nADAPTER ./adapter-LoRA-F16.gguf\n" in modelfile
    lora_entry = next(f for f in summary["files"] if f["path"].endswith("adapter-LoRA-F16.gguf"))
    assert lora_entry["ollama"]["roundtrip"]["passed"]
    assert ollama.parse_modelfile(modelfile)["stops"] == ["<|im_end|>", "<|im_start|>"]
    assert resolve_checkpoint(out / "adapter-LoRA-F16.gguf").kind == "adapter"

    checks = summary["verify"]["files"]
    assert "skipped" in checks[base_file]
    vs_merged = checks["adapter-LoRA-F16.gguf"]["vs_merged"]
    print(f"\nbase+adapter vs merged f16: KL {vs_merged['mean_kl']:.2e}, top-1 {vs_merged['top1_agreement']:.3f}")
    assert vs_merged["merged_gguf"] == "adapter-F16.gguf"
    assert vs_merged["top1_agreement"] >= 0.97 and vs_merged["mean_kl"] < 1e-3

    # the adapter is really applied: the base alone is much further from the merged model
    tok = __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_model_dir))
    windows = quality.token_windows(tok, quality.load_heldout_texts(None, tok), 128, max_tokens=512)
    merged = llamacpp.load_gguf(out / "adapter-F16.gguf", n_ctx=256, logits_all=True)
    alone = llamacpp.load_gguf(out / base_file, n_ctx=256, logits_all=True)
    try:
        base_only = quality.measure(lambda ids: llamacpp.sequence_logits(merged, ids),
                                    {"base": lambda ids: llamacpp.sequence_logits(alone, ids)}, windows)["base"]
    finally:
        merged.close()
        alone.close()
    print(f"base alone vs merged: KL {base_only.mean_kl:.2e}")
    assert base_only.mean_kl > 20 * max(vs_merged["mean_kl"], 1e-6)


# --- other families: tiny random models of their architectures, with their chat templates and turn tokens ------

QWEN3 = ("{% for m in messages %}{% if m.role == 'assistant' %}{% set content = m.content.split('</think>')[-1]"
         ".lstrip('\\n') %}{% else %}{% set content = m.content %}{% endif %}{{ '<|im_start|>' + m.role + '\\n' + "
         "content + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
         "{% endif %}")
MISTRAL = ("{{ bos_token }}{% if messages[0].role == 'system' %}{% set sys = messages[0].content %}{% set msgs = "
           "messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}{% for m in msgs %}"
           "{% if m.role == 'user' %}{{ '[INST] ' + (sys + '\\n\\n' if loop.first and sys else '') + m.content + "
           "' [/INST]' }}{% else %}{{ m.content + eos_token }}{% endif %}{% endfor %}")
PHI3 = ("{% for m in messages %}{{ '<|' + m.role + '|>\\n' + m.content + '<|end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}")
GEMMA3 = ("{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + "
          "'\\n\\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set "
          "loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == "
          "'assistant') -%}{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
          "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}{{ message['content'] | "
          "trim }}{{ '<end_of_turn>\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}"
          "{%- endif -%}")

# family -> (transformers config class, architecture, template, added special tokens, eos, end of turn)
FAMILIES = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", QWEN3, ["<think>", "</think>"], None, "<|im_end|>"),
    "mistral": ("MistralConfig", "MistralForCausalLM", MISTRAL, ["[INST]", "[/INST]", "</s>"], "</s>", "</s>"),
    # Phi-3's turn tokens strip the whitespace after them (rstrip), in its tokenizer as in llama.cpp's Phi-3 vocab,
    # which also expects <s>, </s> and <unk>
    "phi3": ("Phi3Config", "Phi3ForCausalLM", PHI3, ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<s>",
                                                      "</s>", "<unk>"], None, "<|end|>"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA3, ["<start_of_turn>", "<end_of_turn>"], None,
               "<end_of_turn>"),
}


def _tiny_family(default_ckpt, out: Path, family: str) -> Path:
    import torch
    import transformers

    config_cls, arch, template, specials, eos, _ = FAMILIES[family]
    tok = transformers.AutoTokenizer.from_pretrained(str(default_ckpt.path))
    rstrip = family == "phi3"
    tok.add_special_tokens({"additional_special_tokens": [
        transformers.AddedToken(t, rstrip=rstrip and t.startswith("<|"), special=True, normalized=False)
        for t in specials]})
    if eos:
        tok.eos_token = eos
    tok.chat_template = template
    shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                 tie_word_embeddings=True)
    if family in ("qwen3", "gemma3"):
        shape["head_dim"] = 16
    config = getattr(transformers, config_cls)(**shape)
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config["tokenizer_class"] = "GPT2Tokenizer"  # the byte-level BPE vocabulary llama.cpp's converter reads
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return out


@needs_llama_cpp
@pytest.mark.parametrize("family", list(FAMILIES))
def test_other_families_convert_quantize_verify_bundle(family, default_ckpt, tmp_path, llama_tools):
    from transformers import AutoTokenizer

    import workbench
    from workbench.chat import format as chat_format
    from workbench.runtimes.llamacpp import model as llamacpp

    model = _tiny_family(default_ckpt, tmp_path / f"tiny-{family}", family)
    out = tmp_path / "gguf"
    summary = workbench.export(str(model), "gguf", quants="q8_0", output=out, progress=False,
                               store=tmp_path / "store").to_dict()
    [f] = summary["files"]
    assert resolve_checkpoint(f["path"]).format == "gguf"
    bundle = f["ollama"]
    print(f"\n{family}: {_architecture(f['path'])}, stops {bundle.get('stops')}, round trip {bundle.get('roundtrip')}")
    assert bundle["roundtrip"]["passed"] and (out / bundle["modelfile"]).is_file(), bundle
    end_of_turn = FAMILIES[family][5]
    assert bundle["stops"][0] == end_of_turn
    source_format = chat_format.from_tokenizer(AutoTokenizer.from_pretrained(str(model)))
    assert set(llamacpp.gguf_chat_format(f["path"]).stop_tokens) >= set(source_format.stop_tokens)
    smoke = summary["verify"]["files"][Path(f["path"]).name]["smoke"]
    assert smoke["total"] == 5 and summary["verify"]["files"][Path(f["path"]).name]["prompt_tokens_match"]


def _architecture(path) -> str:
    from workbench.runtimes.llamacpp import model as llamacpp

    return llamacpp.gguf_metadata(path)["architecture"]

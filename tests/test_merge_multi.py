"""Several adapters of one base (PEFT add_weighted_adapter) and model-model merges (mergekit), on the tiny Llama."""

import json
import re
from pathlib import Path

import pytest
import torch
from hostile_support import SmallDisk, run_cli

from workbench.checkpoints.checkpoint import read_meta


def _adapter(base: Path, out: Path, *, seed: int, r: int = 4, targets=("q_proj", "v_proj")) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    # dropout as trained adapters have it: the merge check must run the combined adapter in eval mode
    lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets), init_lora_weights=False,
                      lora_dropout=0.1, task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def adapters(module_tmp, tiny_model_dir):
    root = module_tmp("adapters")
    return {"a": _adapter(tiny_model_dir, root / "a", seed=1),
            "b": _adapter(tiny_model_dir, root / "b", seed=2, targets=("q_proj", "v_proj", "o_proj")),
            "r8": _adapter(tiny_model_dir, root / "r8", seed=3, r=8)}


def _logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 20, 300, 4000, 50]])
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(str(folder)).eval()(ids).logits


def _ok(res) -> dict:
    assert res.code == 0, res.stderr
    return json.loads(res.stdout)


_PROGRESS = re.compile(r"\d+%\|.*\| \d+/\d+ \[")  # a tqdm bar (transformers' loading and saving)


def _refused(res, *needles, code: int = 3):
    assert res.code == code, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip() and not _PROGRESS.search(line)]
    assert len(lines) == 1, res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_linear_with_weights_one_zero_is_adapter_a_alone(tmp_path, capsys, store_dir, adapters):
    alone = _ok(run_cli(["merge", adapters["a"], "-o", tmp_path / "alone", "--json"], capsys))
    both = _ok(run_cli(["merge", adapters["a"], adapters["b"], "--method", "linear", "--weights", "1,0",
                        "-o", tmp_path / "lin", "--json"], capsys))
    assert both["merge_check"]["max_abs_logit_diff"] <= 1e-3
    assert (_logits(Path(alone["merged"])) - _logits(Path(both["merged"]))).abs().max() < 1e-4
    ppl = both["probe_perplexity"]
    kinds = [p["kind"] for p in ppl["parents"]]
    assert kinds == ["base", "base + adapter", "base + adapter"]
    # weights 1, 0: the merged model is base + a, so its probe perplexity is a's
    assert ppl["merged"] == pytest.approx(ppl["parents"][1]["probe_perplexity"], rel=1e-4)
    meta = read_meta(tmp_path / "lin")
    assert meta["kind"] == "merged" and meta["format"] == "hf"
    assert [a["path"] for a in meta["parent"]["adapters"]] == [str(adapters["a"]), str(adapters["b"])]
    assert [a["weight"] for a in meta["parent"]["adapters"]] == [1.0, 0.0]
    assert all(len(a["sha"]) == 64 for a in meta["parent"]["adapters"]) and len(meta["parent"]["base"]["sha"]) == 64
    metrics = json.loads((store_dir / "runs" / both["run_id"] / "results.json").read_text())["metrics"]
    recorded = {m["metric"]: m["value"] for m in metrics if m["task"] == "probe_perplexity"}
    assert recorded["merged"] == ppl["merged"] and recorded["parent:a"] == ppl["parents"][1]["probe_perplexity"]
    assert len(recorded) == 4


@pytest.mark.parametrize("args", [["--method", "ties", "--density", "0.5", "--weights", "0.7", "--weights", "0.3"],
                                  ["--method", "dare_ties", "--density", "0.6"],
                                  ["--method", "cat"], ["--method", "svd", "--svd-rank", "4"]])
def test_methods_run_and_verify(tmp_path, capsys, store_dir, adapters, tiny_model_dir, args):
    other = adapters["r8"] if args[1] in ("cat", "svd") else adapters["b"]  # cat and svd take mixed ranks
    out = _ok(run_cli(["merge", adapters["a"], other, *args, "-o", tmp_path / "m", "--json"], capsys))
    assert out["merge_check"]["max_abs_logit_diff"] <= 1e-3
    assert torch.isfinite(torch.tensor(out["probe_perplexity"]["merged"]))
    assert (_logits(tmp_path / "m") - _logits(tiny_model_dir)).abs().max() > 1e-4  # the merge changed weights
    assert read_meta(tmp_path / "m")["parent"]["method"] == args[1]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, store_dir, adapters, default_ckpt):
    a, b, r8 = str(adapters["a"]), str(adapters["b"]), str(adapters["r8"])
    other_base = _adapter(default_ckpt.path, tmp_path / "other-base", seed=4, targets=("q_proj",))
    out = tmp_path / "out"
    cases = [
        ([a, str(other_base), "--method", "linear"], ("is for base", "combine adapters of one base")),
        ([a, b, "--method", "linear", "--weights", "1"], ("1 weight(s) for 2 adapters",)),
        ([a, b, "--method", "linear", "--weights", "1,nan"], ("--weights", "finite")),
        ([a, b, "--method", "linear", "--weights", "1,x"], ("'x' is not a number",)),
        ([a, b, "--method", "ties"], ("--density is required",)),
        ([a, b, "--method", "ties", "--density", "0"], ("--density must be in (0, 1]",)),
        ([a, b, "--method", "dare_linear", "--density", "1.5"], ("--density must be in (0, 1]",)),
        ([a, b, "--method", "cat", "--density", "0.5"], ("--density applies to",)),
        ([a, r8, "--method", "linear"], ("one rank", "r=4", "r=8")),
        ([a, b, "--method", "average"], ("--method must be one of",)),
        ([a, b], ("--method is needed",)),
        ([a, "--method", "linear"], ("combine several adapters",)),
    ]
    for argv, needles in cases:
        _refused(run_cli(["merge", *argv, "-o", out], capsys), *needles)
        assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
    assert not (store_dir / "runs").exists() or not list((store_dir / "runs").iterdir())
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    _refused(run_cli(["merge", a, b, "--method", "linear", "-o", busy], capsys), "not empty")
    assert [p.name for p in busy.iterdir()] == ["x"]


def test_a_disk_that_fills_during_a_multi_adapter_write(tmp_path, capsys, monkeypatch, adapters):
    """A 2 MiB tmpfs for the ~13 MB merged model: one line, the environment's exit code (4), nothing left."""
    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    disk = SmallDisk(tmp_path / "disk", "2m")
    try:
        _refused(run_cli(["merge", adapters["a"], adapters["b"], "--method", "linear", "-o", disk.path / "m"],
                         capsys), "no space left writing", str(disk.path / "m"), code=4)
        assert list(disk.path.iterdir()) == []
    finally:
        disk.close()


def _perturbed_copy(src: Path, out: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(5)
    model = AutoModelForCausalLM.from_pretrained(str(src))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


SLERP = """\
slices:
  - sources:
      - model: {a}
        layer_range: [0, 2]
      - model: {b}
        layer_range: [0, 2]
merge_method: slerp
base_model: {a}
parameters:
  t: 0.5
dtype: float32
"""


def test_mergekit_slerp_loads_and_evals(tmp_path, capsys, store_dir, tiny_model_dir):
    other = _perturbed_copy(tiny_model_dir, tmp_path / "perturbed")
    config = tmp_path / "slerp.yaml"
    config.write_text(SLERP.format(a=tiny_model_dir, b=other))
    out = _ok(run_cli(["merge", "--mergekit", config, "-o", tmp_path / "slerp", "--json"], capsys))
    assert out["merge_method"] == "slerp"
    parents = {p["path"]: p["probe_perplexity"] for p in out["probe_perplexity"]["parents"]}
    assert set(parents) == {str(Path(tiny_model_dir).resolve()), str(other.resolve())}
    merged = _logits(tmp_path / "slerp")
    assert (merged - _logits(tiny_model_dir)).abs().max() > 1e-4 and (merged - _logits(other)).abs().max() > 1e-4
    meta = read_meta(tmp_path / "slerp")
    assert meta["kind"] == "merged" and meta["parent"]["how"] == "mergekit"
    assert meta["parent"]["config"] == config.read_text() and len(meta["parent"]["config_sha"]) == 64
    assert {m["path"] for m in meta["parent"]["models"]} == set(parents)
    (tmp_path / "items.jsonl").write_text(json.dumps({"id": "0", "prompt": "Say 0", "reference": "0"}) + "\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: tiny\ntasks:\n  - name: say\n    data: items.jsonl\n"
                     "    generation: {max_new_tokens: 2}\n    scorers: [{type: exact}]\n")
    ev = run_cli(["eval", tmp_path / "slerp", "--suite", suite, "--json"], capsys)
    assert ev.code == 0, ev.stderr
    assert json.loads(ev.stdout)["checkpoint"]["kind"] == "merged"


def test_mergekit_config_errors_are_one_line(tmp_path, capsys, store_dir, tiny_model_dir, default_ckpt):
    cases = {
        "merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {a}\n    parameters: [1\n": "not valid YAML",
        "merge_method: slerp\n": "Exactly one of 'models', 'slices', or 'modules'",
        "merge_method: bogus\nmodels:\n  - model: {a}\n": "merge_method: 'bogus' is not one of",
        "merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 1}}\n  - modle: {a}\n":
            "models.1.model",
        "merge_method: linear\nmodels:\n  - model: /nowhere/at-all\n": "models.0.model",
        "merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n  - model: default\n"
        "    parameters: {{weight: 0.5}}\n": "merge models of one architecture",
    }
    for text, needle in cases.items():
        config = tmp_path / "bad.yaml"
        config.write_text(text.format(a=tiny_model_dir))
        _refused(run_cli(["merge", "--mergekit", config, "-o", tmp_path / "out"], capsys), needle, str(config))
        assert not (tmp_path / "out").exists()
    _refused(run_cli(["merge", "--mergekit", config, str(tiny_model_dir), "-o", tmp_path / "out"], capsys),
             "--mergekit takes its models from the config")

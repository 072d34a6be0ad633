"""Tool-call data and thinking (issue 25, items 2, 4 and 7): rows with `tools` / `tool_calls` / tool results in the
OpenAI and ShareGPT forms rendered through the template; bad tool data refused before anything is written; tools
and `thinking: on|off` reaching the template in every runtime, and scorers seeing the final answer.

The model behind the thinking and runtime tests is a tiny Llama whose next token depends on the current token only
(attention and MLP outputs zeroed, one-hot embeddings): it answers Qwen 3's prompts with a fixed chain of added
tokens, so its greedy output is known and the same under transformers and llama.cpp."""

import itertools
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from chain_models import save_chain_model
from hostile_support import Workspace, assert_refused, run_cli, snapshot
from loopback import JsonHandler, serving

REPO = Path(__file__).resolve().parent.parent
TOOLS = [{"type": "function", "function": {"name": "find_contact", "description": "Look a person up.", "parameters": {
    "type": "object", "properties": {"name": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["name"]}}}]
CALL_PIECES = ['{"name": "find_contact", ', '"arguments": {"name": ', '"Bo"}}']  # llama.cpp decodes <= 32 bytes a token
CALL = "".join(CALL_PIECES)
THOUGHT = "Looking Bo up."


def corpus_template(name: str) -> str:
    """A chat template of llama.cpp's corpus, read from the llama-cpp-python sdist (scripts/setup.sh downloads it)."""
    from workbench.runtimes.llamacpp.tools import sdist_cache

    archives = sorted(sdist_cache().glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        pytest.skip(f"needs the llama-cpp-python sdist in {sdist_cache()} (scripts/setup.sh downloads it)")
    with tarfile.open(archives[-1]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"/models/templates/{name}.jinja"))
        return tar.extractfile(member).read().decode("utf-8")


def _row(**extra) -> dict:
    return {"tools": TOOLS, "messages": [
        {"role": "user", "content": "Find Bo."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "find_contact", "arguments": '{"name": "Bo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": {"found": True}},
        {"role": "assistant", "content": "Bo is in your book."}], **extra}


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def qwen3_tokenizer_dir(module_tmp, default_ckpt):
    """The default model's tokenizer carrying Qwen 3's template (which renders tools, calls, results, thinking)."""
    from transformers import AutoTokenizer

    out = module_tmp("qwen3-tok")
    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    tok.chat_template = corpus_template("Qwen-Qwen3-0.6B")
    tok.save_pretrained(out)
    return out


# ---- rows

def test_openai_and_sharegpt_tool_rows_train_through_the_template(tmp_path, qwen3_tokenizer_dir):
    """Both forms parse to the same conversation; TRL's rows keep the tools, and the dataset keeps each row's own
    arguments (Arrow would merge them into one struct); the template renders tools, calls and results."""
    from transformers import AutoTokenizer

    from workbench.data.formats import load_rows
    from workbench.train.rows import method_rows, training_dataset

    openai = tmp_path / "openai.jsonl"
    other = {"tools": TOOLS, "messages": [{"role": "user", "content": "Find Al, at most 2."}, {
        "role": "assistant", "tool_calls": [{"function": {"name": "find_contact",
                                                          "arguments": {"name": "Al", "limit": 2}}}]}]}
    openai.write_text(_jsonl([_row(), other]))
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(_jsonl([{"tools": json.dumps([t["function"] for t in TOOLS]), "conversations": [
        {"from": "human", "value": "Find Bo."}, {"from": "function_call", "value": CALL},
        {"from": "observation", "value": '{"found": true}'}, {"from": "gpt", "value": "Bo is in your book."}]}]))
    _, rows = load_rows(openai)
    _, shared = load_rows(sharegpt)
    assert rows[0].messages[1]["tool_calls"][0].pop("id") == "c1" and rows[0].messages[2].pop("tool_call_id") == "c1"
    assert rows[0].messages == shared[0].messages
    assert rows[0].tools == shared[0].tools == [{"type": "function", "function": TOOLS[0]["function"]}]

    _, _, examples = method_rows("sft", openai)
    dataset = training_dataset(examples)
    assert dataset[0]["tools"] == TOOLS
    assert dataset[1]["completion"][0]["tool_calls"][0]["function"]["arguments"] == {"name": "Al", "limit": 2}
    assert dataset[0]["prompt"][1]["tool_calls"][0]["function"]["arguments"] == {"name": "Bo"}  # no "limit": null

    tok = AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir))
    text = tok.apply_chat_template(dataset[0]["prompt"] + dataset[0]["completion"], tools=dataset[0]["tools"],
                                   tokenize=False)
    assert '"name": "find_contact"' in text.split("<|im_end|>")[0]  # the function spec in the system turn
    assert f"<tool_call>\n{CALL}\n</tool_call>" in text
    assert '<tool_response>\n{"found": true}\n</tool_response>' in text
    assert text.rstrip().endswith("Bo is in your book.<|im_end|>")


BAD_ROWS = {
    "undeclared": ({"tools": TOOLS, "messages": [{"role": "user", "content": "Delete Bo."}, {
        "role": "assistant", "tool_calls": [{"function": {"name": "delete_contact", "arguments": {"name": "Bo"}}}]}]},
        "messages.1.tool_calls.0.function.name: 'delete_contact' is not a declared function"),
    "schema": ({"tools": TOOLS, "messages": [{"role": "user", "content": "Find Bo."}, {
        "role": "assistant", "tool_calls": [{"function": {"name": "find_contact",
                                                          "arguments": {"name": "Bo", "limit": "two"}}}]}]},
        "messages.1.tool_calls.0.function.arguments.limit: 'two' is not of type 'integer'"),
    "missing": ({"tools": TOOLS, "messages": [{"role": "user", "content": "Find."}, {
        "role": "assistant", "tool_calls": [{"function": {"name": "find_contact", "arguments": {}}}]}]},
        "arguments: 'name' is a required property"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_data_check_refuses_bad_tool_calls(case, tmp_path, monkeypatch, capsys):
    ws = Workspace(tmp_path, monkeypatch)
    row, needle = BAD_ROWS[case]
    data = ws.file("rows.jsonl", _jsonl([_row(), row]))
    before = snapshot(tmp_path)
    res = run_cli(["data", "check", data, "--template", "none"], capsys)
    assert_refused(res, 3, (f"{data}:2: ", needle), before, tmp_path)


def test_data_check_refuses_a_template_that_drops_tools(tmp_path, monkeypatch, capsys, default_ckpt):
    """SmolLM2's template renders the same text with and without `tools`: exit 3 naming the fix."""
    ws = Workspace(tmp_path, monkeypatch)
    data = ws.file("rows.jsonl", _jsonl([{"messages": [{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "hello"}]}, _row()]))
    before = snapshot(tmp_path)
    res = run_cli(["data", "check", data, "--template", default_ckpt.path], capsys)
    assert_refused(res, 3, (f"{data}:2: tools: the chat template renders the same text without them",
                            "chat_template:"), before, tmp_path)


def test_train_refuses_bad_tool_rows_and_a_template_that_drops_tools(tmp_path, monkeypatch, capsys, default_ckpt):
    """Before any run opens: a call to an undeclared function, then (rows fixed) the base's template dropping them."""
    from workbench.checkpoints.resolve import resolve_checked

    ws = Workspace(tmp_path, monkeypatch)
    row, needle = BAD_ROWS["undeclared"]
    recipe = ws.recipe(base=default_ckpt.path, rows=_jsonl([_row(), row]))
    before = snapshot(tmp_path)
    assert_refused(run_cli(["train", recipe, "-o", tmp_path / "out"], capsys), 3, ("recipe.jsonl:2: ", needle),
                   before, tmp_path)
    recipe = ws.recipe("good.yaml", base=default_ckpt.path, rows=_jsonl([_row(), _row()]))
    resolve_checked(str(default_ckpt.path))  # the base's weights hash, cached in WB_HOME as by any earlier use
    before = snapshot(tmp_path)
    assert_refused(run_cli(["train", recipe, "-o", tmp_path / "out"], capsys), 3,
                   ("good.jsonl:1: tools: the chat template renders the same text without them",
                    f"set `chat_template:` in {recipe}"), before, tmp_path)


def test_eval_refuses_tool_items_on_a_template_that_drops_them(tmp_path, monkeypatch, capsys, default_ckpt):
    """A suite whose items declare tools, on SmolLM2's template: exit 3 before a run opens."""
    ws = Workspace(tmp_path, monkeypatch)
    rows = _jsonl([{"id": "bo", "tools": TOOLS, "messages": [{"role": "user", "content": "Find Bo."}],
                    "reference": CALL}])
    suite = ws.suite(rows=rows)
    run_cli(["eval", default_ckpt.path, "--suite", suite], capsys)  # the weights' hash and torch's caches, once
    before = snapshot(tmp_path)
    res = run_cli(["eval", default_ckpt.path, "--suite", suite], capsys)
    assert_refused(res, 3, (f"{suite}: task 'say', item 'bo': tools: the chat template of ",
                            "renders the same prompt without them"), before, tmp_path)


def test_preference_rows_keep_tools_and_trainers_without_tools_refuse_them(tmp_path):
    """DPO and KTO rows keep the row's tools (TRL renders them); GRPO's and ORPO's trainers drop tools: refused."""
    from workbench.errors import BadInput
    from workbench.train.rows import method_rows

    row = _row()
    pair = {"tools": TOOLS, "prompt": row["messages"][:1], "chosen": row["messages"][1:2],
            "rejected": [{"role": "assistant", "content": "I can't look people up."}]}
    data = tmp_path / "pairs.jsonl"
    data.write_text(_jsonl([pair]))
    for method in ("dpo", "kto"):
        _, _, examples = method_rows(method, data)
        assert all(ex["tools"] == TOOLS for ex in examples)
        assert examples[0].get("chosen", examples[0].get("completion"))[0]["tool_calls"][0]["function"]["name"] == \
            "find_contact"
    conversations = tmp_path / "rows.jsonl"
    conversations.write_text(_jsonl([row]))
    for method, path in (("grpo", conversations), ("orpo", data)):
        with pytest.raises(BadInput, match=rf"\.jsonl:1: tools: TRL's {method} trainer does not render tools"):
            method_rows(method, path)


def test_bundled_tools_data_regenerates_and_checks(tmp_path):
    """scripts/make_tools_data.py writes the committed files byte for byte; every row parses and every call is
    valid against its schema; the suite has single, parallel and no-call items."""
    from workbench.data.formats import load_rows
    from workbench.data.records import load_chat_items

    subprocess.run([sys.executable, str(REPO / "scripts" / "make_tools_data.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("tools_train.jsonl", "tools_test.jsonl"):
        assert (tmp_path / name).read_bytes() == (REPO / "evals" / "data" / name).read_bytes(), name
    fmt, rows = load_rows(REPO / "evals" / "data" / "tools_train.jsonl")
    assert fmt == "messages" and all(r.tools for r in rows)
    items = load_chat_items(REPO / "evals" / "data" / "tools_test.jsonl")
    kinds = {len(it["reference"]) for it in items}
    assert {0, 1, 2} <= kinds and all(it["tools"] for it in items)
    train_users = {r.messages[1]["content"] for r in rows}
    assert not train_users & {it["messages"][1]["content"] for it in items}


# ---- thinking and runtimes, on a model whose greedy answer is known

@pytest.fixture(scope="module")
def chain_model(module_tmp, default_ckpt):
    """Qwen 3's template on a tiny Llama that, after "\\n" (the end of the thinking-on prompt) writes
    <think>THOUGHT</think><tool_call>CALL</tool_call><|im_end|>, and after "\\n\\n" (the end of `thinking: off`'s
    empty think block) goes straight to <tool_call>."""
    from transformers import AutoTokenizer
    from transformers.tokenization_utils_base import AddedToken

    out = module_tmp("chain-qwen3")
    tok = AutoTokenizer.from_pretrained(str(default_ckpt.path))
    pieces = ["<think>", THOUGHT, "</think>", "<tool_call>", *CALL_PIECES, "</tool_call>"]
    tok.add_tokens([AddedToken(p, normalized=False, special=False) for p in pieces])
    tok.chat_template = corpus_template("Qwen-Qwen3-0.6B")
    newline, blank = (tok.encode(s, add_special_tokens=False) for s in ("\n", "\n\n"))
    assert len(newline) == len(blank) == 1
    ids = [tok.convert_tokens_to_ids(p) for p in pieces]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    chain = [(newline[0], ids[0]), *itertools.pairwise(ids), (ids[-1], end), (blank[0], ids[3])]
    return save_chain_model(out, tok, chain, eos_token_id=end, max_positions=512)


def _suite(folder: Path, thinking: str) -> Path:
    (folder / "items.jsonl").write_text(_jsonl([{"id": "bo", "tools": TOOLS, "messages": [
        {"role": "user", "content": "Find Bo."}], "reference": f"<tool_call>{CALL}</tool_call>"}]))
    suite = folder / f"think-{thinking}.yaml"
    suite.write_text(f"name: think-{thinking}\ntasks:\n  - name: call\n    data: items.jsonl\n    generation: "
                     f"{{max_new_tokens: 12, thinking: {thinking}}}\n    scorers: [{{type: exact}}]\n")
    return suite


def test_thinking_on_and_off_reach_qwen3_and_scorers_see_the_answer(chain_model, tmp_path, monkeypatch):
    """thinking: off writes Qwen 3's empty think block into the prompt (the model then answers at once); with
    thinking on the model thinks first, and the exact scorer, seeing the answer only, scores both 1."""
    import workbench
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.config import GenerationSpec
    from workbench.runtimes.hf import HFRuntime, render_prompts

    runtime = HFRuntime(resolve_checkpoint(str(chain_model)))
    convo = [[{"role": "user", "content": "Find Bo."}]]
    on, off = (render_prompts(runtime.tokenizer, runtime.chat_format(), convo, GenerationSpec(thinking=t), [TOOLS])[0]
               for t in ("on", "off"))
    assert on.endswith("<|im_start|>assistant\n") and "<tools>" in on and '"find_contact"' in on
    assert off == on + "<think>\n\n</think>\n\n"
    assert render_prompts(runtime.tokenizer, runtime.chat_format(), convo, GenerationSpec())[0] == on.replace(
        on[on.index("<|im_start|>system"):on.index("<|im_start|>user")], "")  # no tools: no system turn

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    runs = {t: workbench.evaluate(str(chain_model), suite=str(_suite(tmp_path, t)), progress=False)
            for t in ("on", "off")}
    samples = {t: result.run.samples("call")[0] for t, result in runs.items()}
    answer = f"<tool_call>{CALL}</tool_call>"
    assert samples["on"]["generated"] == f"<think>{THOUGHT}</think>{answer}"
    assert samples["on"]["output"] == samples["off"]["output"] == answer
    assert samples["on"]["reasoning_chars"] == len(f"<think>{THOUGHT}</think>")
    assert samples["off"]["reasoning_chars"] == 0 and samples["off"]["generated"] == answer
    for t in ("on", "off"):
        metrics = {m["metric"]: m["value"] for m in runs[t].metrics}
        assert metrics["exact"] == 1.0
        assert metrics["reasoning_unclosed"] == 0.0
    print(f"\nQwen 3 template, thinking on: {samples['on']['generated']!r} -> scored {samples['on']['output']!r}; "
          f"thinking off adds {off[len(on):]!r} to the prompt")


def test_unclosed_thinking_counts_as_no_answer(chain_model, tmp_path, monkeypatch):
    """Cut by the token limit inside its thinking, the answer is empty: exact 0, reasoning_unclosed 1."""
    import workbench

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    suite = _suite(tmp_path, "on")
    suite.write_text(suite.read_text().replace("max_new_tokens: 12", "max_new_tokens: 2"))
    result = workbench.evaluate(str(chain_model), suite=str(suite), progress=False)
    metrics = {m["metric"]: m["value"] for m in result.metrics}
    assert metrics["exact"] == 0.0 and metrics["reasoning_unclosed"] == 1.0
    sample = result.run.samples("call")[0]
    assert sample["output"] == "" and sample["generated"] == f"<think>{THOUGHT}"


def test_endpoint_sends_tools_and_thinking_and_reads_parsed_calls(tmp_path):
    """The request carries the item's tools and chat_template_kwargs; calls the server parsed come back as text."""
    from workbench.config import GenerationSpec
    from workbench.runtimes.base import RuntimeOptions
    from workbench.runtimes.endpoint import EndpointRuntime

    class Handler(JsonHandler):
        def do_GET(self):
            self.send_json({"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self):
            body = self.body()
            self.server.bodies.append(body)
            self.send_json({"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "x", "type": "function", "function": {"name": "find_contact", "arguments": '{"name": "Bo"}'}}
            ]}}]})

    with serving(Handler, bodies=[]) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        options = RuntimeOptions(endpoint_model="m")
        runtime = EndpointRuntime(EndpointRuntime.resolve(url, options), options)
        out = runtime.generate([[{"role": "user", "content": "Find Bo."}], [{"role": "user", "content": "hi"}]],
                               GenerationSpec(thinking="off"), tools=[TOOLS, None])
        runtime.close()
    assert out == [json.dumps([{"name": "find_contact", "arguments": {"name": "Bo"}}])] * 2
    first, second = sorted(server.bodies, key=lambda b: b["messages"][0]["content"])
    assert first["tools"] == TOOLS and "tools" not in second
    assert first["chat_template_kwargs"] == second["chat_template_kwargs"] == {"enable_thinking": False}


def test_llamacpp_renders_tools_and_thinking_as_transformers_does(chain_model, tmp_path, llama_tools):
    """The GGUF's own template (llama-cpp-python's Jinja formatter) gets the same tools and enable_thinking: the same
    greedy outputs as transformers, thinking on and off."""
    pytest.importorskip("llama_cpp")
    from workbench.checkpoints.resolve import resolve_checkpoint
    from workbench.config import GenerationSpec
    from workbench.export.gguf.exporter import export_gguf
    from workbench.runtimes.hf import HFRuntime
    from workbench.runtimes.llamacpp.runtime import LlamaCppRuntime

    artifacts = export_gguf(resolve_checkpoint(str(chain_model)), tmp_path / "gguf", ["q8_0"], progress=False)
    hf = HFRuntime(resolve_checkpoint(str(chain_model)))
    gguf = LlamaCppRuntime(resolve_checkpoint(str(artifacts[0].path)))
    convo = [[{"role": "user", "content": "Find Bo."}]] * 2
    try:
        for thinking in ("on", "off"):
            spec = GenerationSpec(max_new_tokens=12, thinking=thinking)
            expected = hf.generate(convo, spec, tools=[TOOLS, None])
            assert gguf.generate(convo, spec, tools=[TOOLS, None]) == expected, thinking
            assert expected[0].endswith(f"<tool_call>{CALL}</tool_call>")
    finally:
        gguf.close()
        hf.close()


def test_replay_judges_a_reasoning_candidate_on_its_answer(chain_model, tmp_path, monkeypatch):
    """`wb replay` of a Qwen 3 candidate that thinks first: the judge and the checks get the answer after
    </think>, as `wb eval`'s scorers do."""
    from loopback import TieJudge, v1_url

    from workbench.replay.conversations import Conversation
    from workbench.replay.run import replay

    monkeypatch.setenv("WB_STORE", str(tmp_path / "store"))
    logged = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "find_contact", "arguments": '{"name": "Bo"}'}}]}
    conversation = Conversation(id="bo", messages=[{"role": "user", "content": "Find Bo."}], logged_answer=logged,
                                tools=TOOLS, source="prod.jsonl:1", model="gpt-x")
    with serving(TieJudge) as judge:
        run = replay(None, str(chain_model), against_logged=True, conversations=[conversation], max_new_tokens=12,
                     judge={"base_url": v1_url(judge), "model": "tie-judge"}, progress=False).run
    sample = run.samples("replay")[0]
    assert sample["output"] == f"<tool_call>{CALL}</tool_call>"
    assert run.metric("replay", "candidate.tool_call_valid")["value"] == 1.0

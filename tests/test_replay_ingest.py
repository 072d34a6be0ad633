"""`wb replay`'s input side (workbench.replay.ingest): logs read in each format, bad records named and counted,
personal data and credentials scrubbed, training-data copies dropped, duplicates collapsed, samples stratified.
The planted log comes from scripts/make_replay_logs.py, whose manifest counts what it wrote."""

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hostile_support import Workspace, run_cli
from loopback import TieJudge, serving, v1_url

from workbench.errors import EXIT_BAD_INPUT, BadInput, EnvironmentProblem
from workbench.store import Store

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "evals" / "data" / "contacts_train.jsonl"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def make_log(tmp_path: Path, *flags: str, name: str = "traffic") -> tuple[Path, dict]:
    out, manifest = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.manifest.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_replay_logs.py"), str(out), "--manifest",
                    str(manifest), *flags], check=True, capture_output=True, timeout=60)
    return out, json.loads(manifest.read_text())


def lineage(tmp_path: Path) -> "object":
    """An exported GGUF file whose lineage records lead to a merged model, then to the adapter trained on a copy of
    the contacts training rows: the records wb's train, merge and export write (Checkpoint.save_meta)."""
    from workbench.checkpoints.checkpoint import Checkpoint
    from workbench.data.records import sha256_file

    data = tmp_path / "train.jsonl"
    data.write_bytes(TRAIN.read_bytes())
    adapter, merged, gguf = tmp_path / "adapter", tmp_path / "merged", tmp_path / "model-Q8_0.gguf"
    adapter.mkdir()
    merged.mkdir()
    gguf.write_bytes(b"GGUF")
    Checkpoint(adapter, "contacts-lora", "adapter", "peft", base="default", parent={
        "base": "default", "method": "sft", "train_data": str(data), "train_data_sha": sha256_file(data),
        "data_format": "messages"}).save_meta()
    Checkpoint(merged, "contacts-lora-merged", "merged", "hf", parent={
        "adapter": "contacts-lora", "adapter_path": str(adapter), "adapter_sha": "a" * 64, "base": "default",
        "how": "peft merge_and_unload"}).save_meta()
    ckpt = Checkpoint(gguf, gguf.stem, "quantized", "gguf", parent={
        "name": "contacts-lora-merged", "path": str(merged), "sha": "b" * 64, "kind": "merged", "quant": "q8_0"})
    ckpt.save_meta()
    return ckpt


PLANTED_SECRET = re.compile(r"sk-[A-Za-z0-9]{48}|AKIA[A-Z2-7]{16}")
EMAIL = re.compile(r"[\w.]+@[\w.]+\.\w+")
PHONE = re.compile(r"\+1 415-555-01\d\d|\(212\) 555-01\d\d|\+44 20 7946 0\d{3}")


@pytest.mark.slow  # Presidio's import pulls in spaCy and transformers: seconds on 2 cores
def test_planted_log_counts_exactly_what_was_planted_and_leaks_nothing(tmp_path):
    from workbench.replay.ingest import lineage_training_rows, prepare

    log, planted = make_log(tmp_path, "--n", "60", "--pii", "4", "--secrets", "3", "--duplicates", "3",
                            "--near-duplicates", "2", "--training-copies", "3", "--training-file", str(TRAIN),
                            "--malformed", "2")
    rows = lineage_training_rows(lineage(tmp_path))
    assert len(rows) == 256 and rows[0]["source"].endswith("train.jsonl:1")

    p = prepare([log], training_rows=rows)

    c = p.counts
    assert (c["read"], c["conversations"], c["bad_lines"]) == (62, 60, 2)
    assert c["scrubbed_pii.EMAIL_ADDRESS"] == planted["emails"] and c["scrubbed_pii.PHONE_NUMBER"] == planted["phones"]
    assert c["scrubbed_pii"] == planted["emails"] + planted["phones"]
    assert c["scrubbed_secrets"] == planted["secrets"] == 3
    assert c["contaminated"] == 3 and c["duplicates_exact"] == 3 and c["duplicates_near"] == 2
    assert c["sampled_out"] == 0 and c["kept"] == len(p.conversations) == 60 - 3 - 3 - 2
    assert p.formats == {str(log): "openai"}
    assert len(p.bad) == 2 and all(re.fullmatch(rf"{re.escape(str(log))}:\d+: not valid JSON \(.*\)", b) for b in p.bad)

    # Nothing planted survives: not in the conversations, the counts, the bad-line messages or the drop record.
    raw = log.read_text()
    secrets = set(PLANTED_SECRET.findall(raw))
    pii = set(EMAIL.findall(raw)) | set(PHONE.findall(raw))
    assert len(secrets) == 3 + 2 and len(pii) > planted["phones"]  # + one secret in each malformed line
    prepared = json.dumps([vars(x) for x in p.conversations]) + json.dumps(
        [p.counts, p.bad, p.dropped, p.strata, p.formats])
    assert [s for s in secrets | pii if s in prepared] == []
    assert "<EMAIL_ADDRESS>" in prepared and "<PHONE_NUMBER>" in prepared
    # The copies of training rows are what was dropped as contaminated.
    contaminated = [json.loads(raw.splitlines()[int(s.rsplit(":", 1)[1]) - 1]) for s in p.dropped["contaminated"]]
    train_prompts = {json.loads(line)["messages"][0]["content"] for line in TRAIN.read_text().splitlines()}
    assert all(r["request"]["messages"][0]["content"] in train_prompts for r in contaminated)


def test_each_format_is_read_and_cut_at_the_last_user_or_tool_turn(tmp_path):
    from workbench.replay.logs import read_log

    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"},
             {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'}]
    openai = tmp_path / "openai.jsonl"
    openai.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "side": "candidate", "latency_ms": 12.5, "request": {"model": "m1", "messages": turns,
                                                                         "tools": TOOLS},
         "response": {"model": "m1", "choices": [{"message": {"role": "assistant", "content": "3 degrees."}}]}},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]}],
         "choices": [{"message": {"role": "assistant", "content": "Hello."}}], "model": "m2"},
        {"id": "no-content", "side": "baseline", "request": {"model": "m1"}, "response": None},
        {"id": "err", "request": {"model": "m1", "messages": turns[:2]}, "response": None, "error": "timeout"},
    ]) + "\n")
    log = read_log(openai)
    assert log.format == "openai" and log.records == 4 and log.skipped == 1 and log.bad == []
    a, flat, err = log.conversations
    assert a.id == "a" and a.messages == turns and a.logged_answer["content"] == "3 degrees." and a.tools == TOOLS
    assert a.model == "m1" and a.meta == {"side": "candidate", "latency_ms": 12.5} and a.source == f"{openai}:1"
    assert flat.messages == [{"role": "user", "content": "Hi\nthere"}] and flat.model == "m2"
    assert flat.id == f"{openai}:2"
    assert err.logged_answer is None and err.meta == {"error": True}

    ollama = tmp_path / "ollama.jsonl"
    ollama.write_text("\n".join(json.dumps(r) for r in [
        {"request": {"model": "llama3.2", "messages": [{"role": "user", "content": "Weather in Oslo?"}],
                     "tools": TOOLS},
         "response": {"model": "llama3.2", "message": {"role": "assistant", "content": "", "tool_calls": [
             {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}, "done": True}},
        {"model": "qwen3", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"},
                                        {"role": "user", "content": "Bye"}],
         "message": {"role": "assistant", "content": "Bye!"}, "done": True},
    ]) + "\n")
    log = read_log(ollama)
    assert log.format == "ollama" and log.bad == []
    tool, flat = log.conversations
    (converted,) = tool.logged_answer["tool_calls"]
    assert converted["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'} and tool.tools == TOOLS
    assert [m["content"] for m in flat.messages] == ["Hi", "Hey", "Bye"] and flat.logged_answer["content"] == "Bye!"
    assert flat.model == "qwen3"

    generation = {"id": "obs-1", "traceId": "t1", "type": "GENERATION", "model": "gpt-4o-mini",
                  "input": {"messages": [{"role": "user", "content": "Name a color."}], "tools": TOOLS},
                  "output": {"role": "assistant", "content": "Blue."}}
    span = {"id": "obs-0", "traceId": "t1", "type": "SPAN", "input": "retrieval"}
    observations = tmp_path / "observations.jsonl"
    observations.write_text(json.dumps(span) + "\n" + json.dumps(generation) + "\n")
    log = read_log(observations)
    assert log.format == "langfuse" and log.skipped == 1 and len(log.conversations) == 1
    g = log.conversations[0]
    assert (g.id, g.model, g.tools, g.logged_answer["content"]) == ("obs-1", "gpt-4o-mini", TOOLS, "Blue.")
    trace = tmp_path / "trace-t1.json"  # the trace download: pretty-printed JSON, its observations inside
    trace.write_text(json.dumps({"id": "t1", "name": "chat", "observations": [
        span, dict(generation, id="obs-2", input="Name a fruit.", output="Apple.")]}, indent=2))
    log = read_log(trace)
    assert log.format == "langfuse" and [(c.id, c.messages[0]["content"]) for c in log.conversations] == [
        ("obs-2", "Name a fruit.")]


def test_a_file_in_no_format_and_too_many_bad_lines_are_refused_naming_the_file(tmp_path):
    from workbench.replay.ingest import prepare
    from workbench.replay.logs import read_log

    other = tmp_path / "metrics.jsonl"
    other.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n')
    with pytest.raises(BadInput) as exc:
        read_log(other)
    assert exc.value.exit_code == EXIT_BAD_INPUT
    assert str(exc.value).startswith(f"{other}: not a log in a known format") and "\n" not in str(exc.value)
    with pytest.raises(BadInput, match="unknown log format"):
        read_log(other, "splunk")

    log, _ = make_log(tmp_path, "--n", "12", "--malformed", "3", "--secrets", "2")
    with pytest.raises(BadInput) as exc:
        prepare([log])
    message = str(exc.value)
    assert message.startswith(f"{log}: 3 of 15 records are bad (20%, more than 10%)") and "\n" not in message
    assert not PLANTED_SECRET.search(message)

    # A record of another known format given --format is bad, not silently half-read.
    read = read_log(log, "ollama")
    assert read.conversations == [] and all("a record of the openai format, not ollama" in b
                                            for b in read.bad if "not valid JSON" not in b)


def test_sample_is_stratified_proportional_and_seeded(tmp_path):
    from workbench.replay.ingest import stratified_sample, stratum
    from workbench.replay.logs import read_log

    log, planted = make_log(tmp_path, "--n", "200", "--seed", "5")
    convos = read_log(log).conversations
    sizes = Counter(stratum(c) for c in convos)
    assert len(sizes) == 4 and sum(sizes.values()) == 200
    assert sum(n for k, n in sizes.items() if k.endswith("/ tools")) == planted["with_tools"]

    picked, record = stratified_sample(convos, 37, seed=11)
    assert len(picked) == 37 and picked == sorted(set(picked)) and record["seed"] == 11
    drawn = Counter(stratum(convos[i]) for i in picked)
    for k, n in sizes.items():
        share = 37 * n / 200
        assert int(share) <= drawn[k] <= int(share) + 1
        assert record["strata"][k] == {"available": n, "sampled": drawn[k]}
    assert stratified_sample(convos, 37, seed=11)[0] == picked
    assert stratified_sample(convos, 37, seed=12)[0] != picked
    assert stratified_sample(convos, 500, seed=0)[0] == list(range(200))


def test_training_rows_follow_the_lineage_and_a_changed_file_is_refused(tmp_path):
    from workbench.checkpoints.checkpoint import Checkpoint
    from workbench.replay.ingest import lineage_training_rows

    gguf = lineage(tmp_path)
    rows = lineage_training_rows(gguf)
    assert len(rows) == 256 and "Give the contact" in rows[0]["text"] and rows[0]["text"].endswith('"}')
    assert lineage_training_rows(Checkpoint(tmp_path / "base", "base", "base", "hf")) == []

    data = tmp_path / "train.jsonl"
    data.write_text(data.read_text()[:-200])
    with pytest.raises(EnvironmentProblem, match="changed since it was trained"):
        lineage_training_rows(gguf)
    data.unlink()
    with pytest.raises(EnvironmentProblem, match="is gone"):
        lineage_training_rows(gguf)


@pytest.mark.slow  # Presidio's import, and the tiny model answering 52 conversations
def test_wb_replay_of_a_planted_log_keeps_no_planted_secret_anywhere_in_the_store(tmp_path, tiny_model_dir,
                                                                                   monkeypatch, capsys):
    """`wb replay` end to end on the planted log, the candidate a model merged from an adapter trained on the
    contacts rows (its lineage names them): the run records exactly the planted counts, and no planted email, phone
    number or key is in any file of the store."""
    from workbench.checkpoints.checkpoint import Checkpoint

    (tmp_path / "ws").mkdir()
    ws = Workspace(tmp_path / "ws", monkeypatch)
    log, planted = make_log(tmp_path, "--n", "60", "--pii", "4", "--secrets", "3", "--duplicates", "3",
                            "--near-duplicates", "2", "--training-copies", "3", "--training-file", str(TRAIN),
                            "--malformed", "2")
    lineage(tmp_path)  # the adapter's record, naming its training rows
    merged = tmp_path / "candidate"
    shutil.copytree(tiny_model_dir, merged)
    Checkpoint(merged, "contacts-lora-merged", "merged", "hf", parent={
        "adapter": "contacts-lora", "adapter_path": str(tmp_path / "adapter"), "adapter_sha": "a" * 64,
        "base": "default", "how": "peft merge_and_unload"}).save_meta()
    with serving(TieJudge) as judge_server:
        judge = ws.file("judge.yaml", f"judge: {{base_url: '{v1_url(judge_server)}', model: tie-judge}}\n")
        res = run_cli(["replay", log, "--candidate", merged, "--against-logged", "--judge", judge,
                       "--max-new-tokens", "4", "--batch", "64", "--json"], capsys)
    assert res.code == 0, res.stderr
    run = Store.open(ws.store).resolve(json.loads(res.stdout)["run_id"])
    c = run.manifest["ingest"]["counts"]
    assert (c["bad_lines"], c["contaminated"], c["duplicates_exact"], c["duplicates_near"]) == (2, 3, 3, 2)
    assert c["scrubbed_pii"] == planted["emails"] + planted["phones"] and c["scrubbed_secrets"] == 3
    assert len(list(run.samples("replay"))) == c["kept"] == 60 - 3 - 3 - 2

    raw = log.read_text()
    planted_values = set(PLANTED_SECRET.findall(raw)) | set(EMAIL.findall(raw)) | set(PHONE.findall(raw))
    assert len(planted_values) > 5
    leaks = [(str(f.relative_to(ws.store)), v) for f in ws.store.rglob("*") if f.is_file()
             for v in planted_values if v.encode() in f.read_bytes()]
    assert leaks == []
    assert any(b"<EMAIL_ADDRESS>" in f.read_bytes() for f in ws.store.rglob("*") if f.is_file())  # scrubbed, kept

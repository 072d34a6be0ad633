"""The input side of `wb replay`: logs read (workbench.replay.logs), scrubbed (workbench.replay.scrub), cleared of
conversations that overlap the candidate's training rows, deduplicated and sampled, each step counted.

Order, and why: every file is read and its bad records counted before anything else (a file past the bad share
stops the run before any work); scrubbing comes next, so nothing downstream (contamination, dedupe, the run's
records) ever holds the raw text; contamination before dedupe, so a training row copied twice counts as
contaminated twice rather than once plus a duplicate.

- Contamination is workbench.data.contamination's n-gram rule (lm-eval's decontamination, 13-grams), with the
  training rows as the indexed side: n-grams that more than ten rows share are the task's instruction text, not a
  row's content, and are left out, so logged traffic of the same task is not taken for a copy of the training data.
- Duplicates are workbench.data.check's: exact (the normalized text of every turn, tool calls included) and near
  (MinHash LSH over word 3-gram shingles of the non-system turns, similarity 0.7); the first of each group is kept.
- `sample`: stratified by the logged model and by whether tools are used, allocated in proportion to each
  stratum's size (largest remainder), drawn within each stratum by random.Random(seed); the seed and each
  stratum's counts are recorded.
"""

import random
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput, EnvironmentProblem
from workbench.replay.conversations import Conversation

MAX_BAD_SHARE = 0.1


@dataclass
class Prepared:
    conversations: list[Conversation]
    counts: dict[str, int]
    """read (records), conversations, bad_lines, skipped (records with no conversation), scrubbed_pii,
    scrubbed_secrets (and scrubbed_pii.KIND / scrubbed_secrets.KIND per kind), contaminated, duplicates_exact,
    duplicates_near, sampled_out, kept."""
    bad: list[str] = field(default_factory=list)
    """"FILE:LINE: why" per bad record (never its content)."""
    formats: dict[str, str] = field(default_factory=dict)
    """Each log file and the format it was read as."""
    strata: dict = field(default_factory=dict)
    """{"by": [...], "seed", "sample", "strata": {"MODEL / tools|no tools": {"available", "sampled"}}}."""
    dropped: dict[str, list[str]] = field(default_factory=dict)
    """The sources (FILE:LINE) of the conversations dropped, per reason: contaminated, duplicates_exact,
    duplicates_near, sampled_out."""


def prepare(paths: list[Path], *, fmt: str | None = None, training_rows: list[dict] | None = None,
            sample: int | None = None, seed: int = 0, max_bad_share: float = MAX_BAD_SHARE) -> Prepared:
    """Logged conversations, ready to replay. paths: log files; fmt: their format (default: detected per file);
    training_rows: the candidate's training rows ({"text"} or {"messages"}, and a "source"; see
    lineage_training_rows); sample: draw this many (stratified); max_bad_share: more bad records than this share
    of a file is a BadInput naming the file."""
    from workbench.replay.logs import read_log
    from workbench.replay.scrub import Scrubber

    if sample is not None and sample < 1:
        raise BadInput(f"--sample {sample}: must be >= 1")
    if not 0 <= max_bad_share <= 1:
        raise BadInput(f"max bad share {max_bad_share}: must be within [0, 1]")
    if not paths:
        raise BadInput("no log file given")
    logs = [read_log(p, fmt) for p in paths]
    for log in logs:
        if not log.records:
            raise BadInput(f"{log.path}: empty log")
        share = len(log.bad) / log.records
        if share > max_bad_share:
            raise BadInput(f"{log.path}: {len(log.bad)} of {log.records} records are bad ({share:.0%}, more than "
                           f"{max_bad_share:.0%}); the first: {log.bad[0]}")
    convos = [c for log in logs for c in log.conversations]
    counts = {"read": sum(log.records for log in logs), "conversations": len(convos),
              "bad_lines": sum(len(log.bad) for log in logs), "skipped": sum(log.skipped for log in logs)}
    prepared = Prepared([], counts, [b for log in logs for b in log.bad], {str(log.path): log.format for log in logs})

    scrubber = Scrubber()
    convos = [scrubber.conversation(c) for c in convos]
    for name, found in (("scrubbed_pii", scrubber.found.pii), ("scrubbed_secrets", scrubber.found.secrets)):
        counts[name] = sum(found.values())
        counts.update({f"{name}.{kind}": n for kind, n in sorted(found.items())})

    convos = _drop(prepared, "contaminated", convos, _contaminated(convos, training_rows or []))
    convos = _drop(prepared, "duplicates_exact", convos, _duplicates(convos, near=False))
    convos = _drop(prepared, "duplicates_near", convos, _duplicates(convos, near=True))
    picked, prepared.strata = stratified_sample(convos, sample, seed)
    convos = _drop(prepared, "sampled_out", convos, set(range(len(convos))) - set(picked))
    counts["kept"] = len(convos)
    if not convos:
        raise BadInput(f"{', '.join(map(str, paths))}: no conversation left to replay ({_summary(counts)})")
    prepared.conversations = convos
    return prepared


def _summary(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if "." not in k)


def _drop(prepared: Prepared, reason: str, convos: list[Conversation], indices: set[int]) -> list[Conversation]:
    prepared.counts[reason] = len(indices)
    prepared.dropped[reason] = [convos[i].source for i in sorted(indices)]
    return [c for i, c in enumerate(convos) if i not in indices]


# ---- text of a conversation -----------------------------------------------------------------------------------

def _turn_text(m: dict) -> str:
    parts = [m.get("content") or ""]
    for call in m.get("tool_calls") or []:
        fn = call.get("function", call) if isinstance(call, dict) else {}
        parts += [str(fn.get("name", "")), str(fn.get("arguments", ""))]
    return " ".join(p for p in parts if p)


def conversation_text(convo: Conversation, *, system: bool = True, answer: bool = False) -> str:
    """Every turn's text (tool calls included), as the hygiene checks read it."""
    turns = [m for m in convo.messages if system or m["role"] != "system"]
    if answer and convo.logged_answer:
        turns.append(convo.logged_answer)
    return " ".join(_turn_text(m) for m in turns)


def _row_text(row: dict) -> str:
    if isinstance(row.get("text"), str):
        return row["text"]
    return " ".join(_turn_text(m) for m in row.get("messages") or [] if isinstance(m, dict))


# ---- contamination and duplicates -----------------------------------------------------------------------------

def _contaminated(convos: list[Conversation], training_rows: list[dict]) -> set[int]:
    """Conversations (prompt and logged answer) sharing n-grams with a training row."""
    if not training_rows or not convos:
        return set()
    from workbench.data.contamination import DEFAULT_N, EvalItem, NgramIndex

    index = NgramIndex([EvalItem(str(r.get("source") or f"training row {i}"), _row_text(r))
                        for i, r in enumerate(training_rows)], DEFAULT_N)
    return {hit.row for hit in index.check([conversation_text(c, answer=True) for c in convos]).hits}


def _duplicates(convos: list[Conversation], *, near: bool) -> set[int]:
    """The indices to drop: every member of a group of duplicates but its first. Exact: every turn's normalized
    text; near: the non-system turns' (a deployment's shared system prompt would make all its traffic alike)."""
    from workbench.data.check import exact_duplicates, near_duplicates
    from workbench.data.formats import Row

    if not convos:
        return set()
    rows = [Row(i, [{"role": "user", "content": conversation_text(c, system=not near)}]) for i, c in enumerate(convos)]
    groups = near_duplicates(rows) if near else exact_duplicates(rows)
    return {i for group in groups for i in sorted(group)[1:]}


# ---- sampling -------------------------------------------------------------------------------------------------

def uses_tools(convo: Conversation) -> bool:
    turns = convo.messages + ([convo.logged_answer] if convo.logged_answer else [])
    return bool(convo.tools) or any(m.get("tool_calls") or m.get("role") == "tool" for m in turns)


def stratum(convo: Conversation) -> str:
    return f"{convo.model or 'unknown model'} / {'tools' if uses_tools(convo) else 'no tools'}"


def stratified_sample(convos: list[Conversation], n: int | None, seed: int) -> tuple[list[int], dict]:
    """(indices kept, in log order; the record of the draw). Proportional allocation by the largest remainder:
    each stratum gets floor(n * size / total), and the seats left go to the largest fractional parts (ties: the
    larger stratum, then its name)."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(convos):
        groups.setdefault(stratum(c), []).append(i)
    total = len(convos)
    record = {"by": ["logged model", "tools used"], "seed": seed, "sample": n, "strata": {}}
    if n is None or n >= total:
        record["strata"] = {k: {"available": len(v), "sampled": len(v)} for k, v in sorted(groups.items())}
        return list(range(total)), record
    quotas = {k: n * len(v) / total for k, v in groups.items()}
    seats = {k: int(q) for k, q in quotas.items()}
    for k in sorted(groups, key=lambda k: (-(quotas[k] - seats[k]), -len(groups[k]), k))[:n - sum(seats.values())]:
        seats[k] += 1
    rng = random.Random(seed)
    picked = []
    for k in sorted(groups):
        picked += rng.sample(groups[k], seats[k])
        record["strata"][k] = {"available": len(groups[k]), "sampled": seats[k]}
    return sorted(picked), record


# ---- the candidate's training rows ----------------------------------------------------------------------------

def lineage_training_rows(ckpt) -> list[dict]:
    """The training rows a checkpoint's lineage names, as {"source": "FILE:LINE", "text"}: an adapter's
    `train_data`, and through a merged model or an exported file, the adapters they were made from (their
    wb_checkpoint.json / <file>.wb.json). A base model, or a checkpoint wb did not make, names none: []. A
    training file that is gone, or changed since (its sha256), is an EnvironmentProblem."""
    from workbench.checkpoints.checkpoint import Checkpoint
    from workbench.data.formats import load_rows
    from workbench.data.records import sha256_file
    from workbench.system.user_files import load_json

    rows, seen_meta, seen_data = [], set(), set()
    todo = [(ckpt.to_dict(), str(ckpt.path))]
    while todo:
        meta, where = todo.pop()
        parent = meta.get("parent") or {}
        data = parent.get("train_data")
        if data and data not in seen_data:
            seen_data.add(data)
            path = Path(data)
            if not path.is_file():
                raise EnvironmentProblem(f"{where}: its training data {path} is gone (needed to drop logged "
                                         "conversations that overlap it)")
            if parent.get("train_data_sha") and sha256_file(path) != parent["train_data_sha"]:
                raise EnvironmentProblem(f"{where}: its training data {path} changed since it was trained (sha256 "
                                         "differs)")
            _, loaded = load_rows(path, parent.get("data_format"))
            rows += [{"source": f"{path}:{row.line}", "text": row.text()} for row in loaded]
        links = [parent.get("adapter_path"), parent.get("path")]
        links += [e.get("path") for e in (parent.get("adapters") or []) + (parent.get("models") or [])
                  if isinstance(e, dict)]
        for link in filter(None, links):
            meta_path = Checkpoint(Path(link), Path(link).name, "", "").meta_path  # its lineage record
            if meta_path in seen_meta or not meta_path.is_file():
                continue
            seen_meta.add(meta_path)
            todo.append((load_json(meta_path, "a checkpoint's lineage record"), link))
    return rows


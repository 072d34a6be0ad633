"""`wb data check`: the checks the guides ask for before a long run. Exact and near duplicates (MinHash through
datasketch), token-length outliers for the checkpoint's tokenizer, five random rows rendered with its chat
template, and contamination against the eval data the user will run (workbench.data.contamination)."""

import os
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.contamination import ContaminationReport, EvalItem, NgramIndex, words
from workbench.data.formats import Row
from workbench.system.extras import require
from workbench.toolcalls.rows import check_renders_tools, tokenizer_render

NEAR_DUP_THRESHOLD = 0.7  # estimated Jaccard similarity of word 3-gram shingles (BigCode dedup uses 0.7)
MINHASH_PERMUTATIONS = 64
RENDERED_SAMPLES = 5


@dataclass
class DataReport:
    path: str
    format: str
    rows: int
    exact_duplicates: list[list[int]] = field(default_factory=list)  # groups of file line numbers
    near_duplicates: list[list[int]] = field(default_factory=list)
    lengths: dict | None = None
    rendered: list[dict] = field(default_factory=list)
    contamination: ContaminationReport | None = None

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("path", "format", "rows", "exact_duplicates", "near_duplicates",
                                              "lengths", "rendered")}
        c = self.contamination
        if c is not None:
            out["contamination"] = {
                "ngram": c.n, "eval_items": c.eval_items, "unchecked_short_items": c.unchecked_short_items,
                "template_ngrams": c.template_ngrams,
                "contaminated_rows": len(c.contaminated_rows),
                "hits": [{"line": h.row, "eval_item": h.item.source, "eval_text": h.item.text[:200],
                          "shared_ngrams": h.shared, "row_ngrams": h.row_ngrams} for h in c.hits],
            }
        return out


def exact_duplicates(rows: list[Row]) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for row in rows:
        groups.setdefault(" ".join(words(row.text())), []).append(row.line)
    return [lines for lines in groups.values() if len(lines) > 1]


def near_duplicates(rows: list[Row], threshold: float = NEAR_DUP_THRESHOLD) -> list[list[int]]:
    """Groups of rows whose shingle sets look alike (MinHash LSH), exact duplicates excluded. LSH only proposes
    candidates (a pair well below the threshold can share a band): each is kept when its shingle sets' Jaccard
    similarity with the group's first row does reach the threshold."""
    datasketch = require("datasketch", "Near-duplicate detection", "train")
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=MINHASH_PERMUTATIONS)
    hashes, shingle_sets, seen = {}, {}, set()
    for row in rows:
        ws = words(row.text())
        key = " ".join(ws)
        if key in seen:
            continue  # an exact duplicate: reported as such
        seen.add(key)
        shingles = {" ".join(ws[i:i + 3]).encode() for i in range(max(1, len(ws) - 2))}
        mh = datasketch.MinHash(num_perm=MINHASH_PERMUTATIONS, seed=1)
        mh.update_batch(list(shingles))
        hashes[row.line], shingle_sets[row.line] = mh, shingles
        lsh.insert(str(row.line), mh)
    groups, grouped = [], set()
    for line, mh in hashes.items():
        if line in grouped:
            continue
        mine = shingle_sets[line]
        near = sorted(k for k in map(int, lsh.query(mh)) if k not in grouped and (
            k == line or len(mine & shingle_sets[k]) / len(mine | shingle_sets[k]) >= threshold))
        if len(near) > 1:
            groups.append(near)
            grouped.update(near)
    return groups


def token_lengths(rows: list[Row], tokenizer) -> dict:
    """Token counts of each rendered row; outliers lie past Q3 + 3 IQR or past the tokenizer's maximum."""
    lengths = []
    for row in rows:
        convo = row.messages + (row.chosen or [])
        ids = tokenizer.apply_chat_template(convo, tools=row.tools, tokenize=True) if tokenizer.chat_template else \
            tokenizer(" ".join(m["content"] for m in convo))["input_ids"]
        if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        lengths.append((len(ids), row.line))
    counts = sorted(n for n, _ in lengths)
    q1, q3 = (statistics.quantiles(counts, n=4)[0], statistics.quantiles(counts, n=4)[2]) if len(counts) > 1 \
        else (counts[0], counts[0])
    limit = q3 + 3 * (q3 - q1)
    model_max = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else None
    outliers = sorted(((n, line) for n, line in lengths if n > limit or (model_max and n > model_max)), reverse=True)
    return {"min": counts[0], "median": statistics.median(counts), "max": counts[-1], "outlier_above": round(limit, 1),
            "model_max_length": model_max, "outliers": [{"line": line, "tokens": n} for n, line in outliers[:20]],
            "outlier_count": len(outliers)}


def rendered_samples(rows: list[Row], tokenizer, k: int = RENDERED_SAMPLES, seed: int = 0) -> list[dict]:
    picks = random.Random(seed).sample(rows, min(k, len(rows)))
    return [{"line": row.line, "text": tokenizer.apply_chat_template(row.messages + (row.chosen or []),
                                                                     tools=row.tools, tokenize=False)}
            for row in sorted(picks, key=lambda r: r.line)]


def check_data(file: str | os.PathLike, *, against: list[str] = (), template: str = "default",
               format: str | None = None, ngram: int = 13, data_dir: str | os.PathLike | None = None,
               evals_dir: str | None = None) -> DataReport:
    """`wb data check FILE`: training data (JSONL: messages, ShareGPT, Alpaca, prompt/completion or preference rows)
    checked before a long run (rows with tools: each call against its declared function's schema, and the
    template must render the tools). against: eval data to check for contamination (a suite, an lm-eval task the mirror
    holds, a JSONL file); template: the checkpoint whose tokenizer and chat template measure and render the rows
    ('none' to skip); format: the row format (default: detected); ngram: n-gram length for contamination;
    data_dir: the benchmark mirror (default $WB_DATA_DIR); evals_dir: a folder of suites. Everything is read and
    checked before any model loads."""
    from workbench.data.eval_sources import against_items
    from workbench.data.formats import load_rows
    from workbench.system.home import data_dir as resolve_data_dir

    detected, rows = load_rows(Path(file), format)
    items = against_items(list(against), resolve_data_dir(data_dir), evals_dir) if against else None
    tokenizer = None
    if template != "none":
        from workbench.checkpoints.resolve import resolve_checkpoint
        from workbench.runtimes.hf import load_tokenizer

        tokenizer = load_tokenizer(resolve_checkpoint(template, with_sha=False))
    return check_rows(str(file), detected, rows, tokenizer=tokenizer, against=items, n=ngram)


def check_rows(path: str, fmt: str, rows: list[Row], *, tokenizer=None, against: list[EvalItem] | None = None,
               n: int = 13) -> DataReport:
    if tokenizer is not None and tokenizer.chat_template:
        check_renders_tools(path, rows, tokenizer_render(tokenizer),
                            "check them with --template naming a checkpoint whose template renders tools, and train "
                            "with `chat_template:` set to one, e.g. qwen3")
    report = DataReport(path, fmt, len(rows), exact_duplicates(rows), near_duplicates(rows))
    if tokenizer is not None:
        report.lengths = token_lengths(rows, tokenizer)
        if tokenizer.chat_template:
            report.rendered = rendered_samples(rows, tokenizer)
    if against:
        report.contamination = contaminated(rows, against, n)
    return report


def contaminated(rows: list[Row], against: list[EvalItem], n: int) -> ContaminationReport:
    report = NgramIndex(against, n).check([row.text() for row in rows])
    for hit in report.hits:  # row index -> the file's line number
        hit.row = rows[hit.row].line
    return report

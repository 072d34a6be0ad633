"""What an export cost, measured on held-out text in a stream: perplexity of the candidate, mean
KL(source || candidate) of next-token distributions and top-1 agreement, without ever holding or writing the
logits of the whole text (one window at a time; only one float per scored token is kept).

    windows = token_windows(tokenizer, load_heldout_texts(path, tokenizer), window=256)
    results = measure(source_fn, {"q4_k_m": candidate_fn}, windows)   # fn(ids) -> logits [len(ids), vocab]
    results["q4_k_m"].as_dict()

or feed an accumulator directly: `acc = QualityAccumulator(); acc.update(src_logits, cand_logits, targets)`.
Logits and log-probabilities are both accepted (each row is log-softmax normalized here), as numpy arrays or
torch tensors, shaped [n, vocab] or [batch, n, vocab]; targets [n] or [batch, n], negative ids are skipped.
"""

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.errors import BadInput

DEFAULT_HELDOUT = "heldout/default.txt"  # under exporters/: prose written for this project (see its header)
DEFAULT_WINDOW = 256
_ROWS_PER_STEP = 64  # rows converted to float64 at a time: 64 x 49k vocab x 8 bytes x 2 = 50 MB


def _as_numpy(x):
    import numpy as np

    if hasattr(x, "detach"):  # torch tensor, on any device and dtype (bf16 has no numpy equivalent)
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _log_softmax(rows):
    import numpy as np

    rows = rows.astype(np.float64)
    return rows - np.logaddexp.reduce(rows, axis=-1, keepdims=True)


@dataclass(frozen=True)
class QualityResult:
    n_tokens: int
    perplexity: float  # of the candidate on the targets
    source_perplexity: float
    mean_kl: float  # mean over tokens of KL(source || candidate), nats
    kl_stderr: float
    kl_median: float
    kl_p99: float
    kl_max: float
    top1_agreement: float  # share of positions where both argmaxes agree
    top1_stderr: float
    vocab_trimmed: int = 0  # extra vocabulary columns (padding) dropped from the wider side

    def as_dict(self) -> dict:
        return asdict(self)


class QualityAccumulator:
    """Sums over scored tokens; feed it chunk by chunk, read result() at the end."""

    def __init__(self):
        self.n = 0
        self.nll = 0.0
        self.source_nll = 0.0
        self.agree = 0
        self.kls: list = []  # per-token KL (float32 arrays), for median / tail / stderr
        self.vocab_trimmed = 0

    def update(self, source, candidate, targets) -> None:
        import numpy as np

        src, cand, tgt = _as_numpy(source), _as_numpy(candidate), _as_numpy(targets)
        if src.ndim == 3:
            src, cand = src.reshape(-1, src.shape[-1]), cand.reshape(-1, cand.shape[-1])
        tgt = tgt.reshape(-1).astype(np.int64)
        if not (src.ndim == cand.ndim == 2 and src.shape[0] == cand.shape[0] == tgt.shape[0]):
            raise ValueError(f"quality: shapes differ: source {src.shape}, candidate {cand.shape}, targets {tgt.shape}")
        vocab = min(src.shape[1], cand.shape[1])
        self.vocab_trimmed = max(self.vocab_trimmed, abs(src.shape[1] - cand.shape[1]))
        keep = tgt >= 0
        src, cand, tgt = src[keep, :vocab], cand[keep, :vocab], tgt[keep]
        if tgt.size and tgt.max() >= vocab:
            raise ValueError(f"quality: target id {int(tgt.max())} outside the vocabulary ({vocab})")
        for start in range(0, tgt.shape[0], _ROWS_PER_STEP):
            sl = slice(start, start + _ROWS_PER_STEP)
            p, q, t = _log_softmax(src[sl]), _log_softmax(cand[sl]), tgt[sl]
            rows = np.arange(t.shape[0])
            self.nll -= float(q[rows, t].sum())
            self.source_nll -= float(p[rows, t].sum())
            self.agree += int((p.argmax(-1) == q.argmax(-1)).sum())
            kl = (np.exp(p) * (p - q)).sum(-1)
            self.kls.append(np.maximum(kl, 0.0).astype(np.float32))  # tiny negatives are rounding
            self.n += t.shape[0]

    def result(self) -> QualityResult:
        import numpy as np

        if not self.n:
            raise BadInput("quality: no tokens were scored (held-out text empty or shorter than two tokens?)")
        kl = np.concatenate(self.kls).astype(np.float64)
        top1 = self.agree / self.n
        return QualityResult(
            n_tokens=self.n, perplexity=math.exp(self.nll / self.n), source_perplexity=math.exp(self.source_nll / self.n),
            mean_kl=float(kl.mean()), kl_stderr=float(kl.std(ddof=1) / math.sqrt(self.n)) if self.n > 1 else 0.0,
            kl_median=float(np.median(kl)), kl_p99=float(np.percentile(kl, 99)), kl_max=float(kl.max()),
            top1_agreement=top1, top1_stderr=math.sqrt(top1 * (1 - top1) / self.n), vocab_trimmed=self.vocab_trimmed,
        )


def next_token_targets(ids: list[int]) -> list[int]:
    """The target of position i is token i+1; the last position has none (-1, skipped)."""
    return list(ids[1:]) + [-1]


def measure(source_fn: Callable, candidates: Mapping[str, Callable], windows: Iterable[list[int]],
            progress: Callable[[int], None] | None = None) -> dict[str, QualityResult]:
    """Run every window through the source and each candidate (fn(ids) -> logits [len(ids), vocab]); the
    source's logits are computed once per window and shared by all candidates."""
    accs = {name: QualityAccumulator() for name in candidates}
    for ids in windows:
        targets = next_token_targets(ids)
        src = _as_numpy(source_fn(ids))
        for name, fn in candidates.items():
            accs[name].update(src, fn(ids), targets)
        if progress:
            progress(1)
    return {name: acc.result() for name, acc in accs.items()}


def _adds_bos(tokenizer) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def token_windows(tokenizer, texts: Iterable[str], window: int = DEFAULT_WINDOW,
                  max_tokens: int | None = None) -> list[list[int]]:
    """Held-out texts tokenized as one stream (joined by blank lines) and cut into windows of `window` tokens,
    each starting with BOS when the tokenizer itself adds one. A last window shorter than a quarter of the
    window is dropped; `max_tokens` caps the total."""
    if window < 8:
        raise BadInput(f"quality window of {window} tokens is too short (at least 8)")
    bos = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    body = window - len(bos)
    stream = tokenizer("\n\n".join(t for t in texts if t.strip()), add_special_tokens=False)["input_ids"]
    if max_tokens is not None:
        stream = stream[: max(0, max_tokens)]
    windows = [bos + stream[i: i + body] for i in range(0, len(stream), body)]
    if len(windows) > 1 and len(windows[-1]) - len(bos) < body // 4:
        windows.pop()
    windows = [w for w in windows if len(w) >= 2]
    if not windows:
        raise BadInput("held-out text is empty: nothing to measure perplexity or KL on")
    return windows


def default_heldout_path() -> Path:
    from workbench.system.content import content_dir

    return content_dir("exporters") / DEFAULT_HELDOUT


def load_heldout_texts(path: str | Path | None = None, tokenizer=None) -> list[str]:
    """Held-out texts: a .txt file (one text), a .jsonl of chat items (messages [+ reference as the assistant
    turn], rendered with the tokenizer's chat template, so the text is what the fine-tune saw) or of {"text"};
    None -> the bundled default (exporters/heldout/default.txt)."""
    from workbench.system.user_files import read_text, regular_file

    path = regular_file(Path(path) if path is not None else default_heldout_path(), "held-out text")
    if path.suffix != ".jsonl":
        text = read_text(path, "held-out text")
        if path == default_heldout_path():
            text = text.split("\n---\n", 1)[-1]  # the header says where the text comes from; not scored
        if not text.strip():
            raise BadInput(f"held-out text '{path}': empty")
        return [text]
    return _jsonl_texts(path, tokenizer)


def check_heldout_file(path: Path, what: str) -> None:
    """Read a held-out/calibration file through once (a regular file, UTF-8, valid JSON rows), so that a bad one is
    refused by name before a run opens; rendering its texts needs the tokenizer, later."""
    from workbench.data.records import json_objects
    from workbench.system.user_files import read_text

    if path.suffix == ".jsonl":
        for _ in json_objects(path):
            pass
    else:
        read_text(path, f"{what} text")


def _jsonl_texts(path: Path, tokenizer) -> list[str]:
    import json

    from workbench.data.records import json_objects, load_chat_items

    first = next((row for _, _, row in json_objects(path)), None)
    if isinstance(first, dict) and "text" in first and "messages" not in first:
        rows = [(where, row) for _, where, row in json_objects(path)]
        bad = next((where for where, r in rows if not isinstance(r.get("text"), str)), None)
        if bad:
            raise BadInput(f"{bad}: 'text' must be a string")
        return [r["text"] for _, r in rows]
    items = load_chat_items(path, need_reference=False)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise BadInput(f"{path}: chat items need a tokenizer with a chat template to be rendered as held-out text")
    texts = []
    for it in items:
        messages = list(it["messages"])
        if it.get("reference") is not None and messages[-1]["role"] != "assistant":
            ref = it["reference"]
            messages.append({"role": "assistant", "content": ref if isinstance(ref, str) else json.dumps(ref)})
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False))
    return texts

"""Contamination: word n-grams shared between training rows and the eval items a user will score them on.

The rule is lm-eval's decontamination (its janitor): lowercase, punctuation to spaces, words split on
whitespace, 13-grams by default; a training row that shares any n-gram with an eval item is contaminated,
and is listed with that item. An eval item shorter than n words holds no n-gram and cannot be checked at that
n: the report counts them (lower n, e.g. --ngram 8, to reach them). An n-gram that more than
`max_items_per_ngram` eval items share is a task's instruction template, not its content ("Give the contact in
this message as one-line JSON with keys ..."): such n-grams are left out, and counted.
"""

import string
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_N = 13
MAX_ITEMS_PER_NGRAM = 10
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "\u2018\u2019\u201c\u201d"})


def words(text: str) -> list[str]:
    return text.lower().translate(_PUNCT).split()


def ngram_keys(ws: list[str], n: int) -> Iterable[int]:
    """One key per word n-gram (Python's tuple hash: the index and the lookups live in one process)."""
    for i in range(len(ws) - n + 1):
        yield hash(tuple(ws[i:i + n]))


@dataclass(frozen=True)
class EvalItem:
    source: str  # where it came from: "mmlu/test/anatomy.jsonl:12", "contacts_test.jsonl:3", ...
    text: str


@dataclass
class Hit:
    row: int  # index into the training rows
    item: EvalItem
    shared: int  # n-grams of the row found in this item
    row_ngrams: int


@dataclass
class ContaminationReport:
    n: int
    eval_items: int
    unchecked_short_items: int
    rows: int
    template_ngrams: int = 0  # n-grams left out as shared instruction text
    hits: list[Hit] = field(default_factory=list)

    @property
    def contaminated_rows(self) -> list[int]:
        return sorted({h.row for h in self.hits})


class NgramIndex:
    """The eval side, built once: n-gram key -> the first eval item holding it."""

    def __init__(self, items: Iterable[EvalItem], n: int = DEFAULT_N, max_items_per_ngram: int = MAX_ITEMS_PER_NGRAM):
        if n < 1:
            raise ValueError("n must be >= 1")
        self.n = n
        self.items: list[EvalItem] = []
        self.short = 0
        self._owner: dict[int, int] = {}
        spread: dict[int, int] = {}  # key -> how many items hold it
        for item in items:
            ws = words(item.text)
            if len(ws) < n:
                self.short += 1
                continue
            idx = len(self.items)
            self.items.append(item)
            for key in set(ngram_keys(ws, n)):
                self._owner.setdefault(key, idx)
                spread[key] = spread.get(key, 0) + 1
        common = [key for key, count in spread.items() if count > max_items_per_ngram]
        for key in common:
            del self._owner[key]
        self.template_ngrams = len(common)

    def check(self, rows: list[str]) -> ContaminationReport:
        report = ContaminationReport(self.n, len(self.items) + self.short, self.short, len(rows),
                                     self.template_ngrams)
        owner, n = self._owner, self.n
        for r, text in enumerate(rows):
            ws = words(text)
            if len(ws) < n:
                continue
            counts: dict[int, int] = {}
            total = 0
            for key in ngram_keys(ws, n):
                total += 1
                idx = owner.get(key)
                if idx is not None:
                    counts[idx] = counts.get(idx, 0) + 1
            for idx, shared in sorted(counts.items(), key=lambda kv: -kv[1]):
                report.hits.append(Hit(r, self.items[idx], shared, total))
        return report


def exact_matches(items: Iterable[EvalItem], rows: list[str]) -> list[tuple[int, EvalItem]]:
    """The naive pass: a training row whose normalized text equals an eval item's. (bench/ compares against it.)"""
    by_text = {}
    for item in items:
        by_text.setdefault(" ".join(words(item.text)), item)
    out = []
    for r, text in enumerate(rows):
        item = by_text.get(" ".join(words(text)))
        if item is not None:
            out.append((r, item))
    return out

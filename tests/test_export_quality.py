"""Held-out quality in a stream: perplexity, KL(source || candidate), top-1 agreement, and the token windows."""

import json
import math

import numpy as np
import pytest

from workbench.errors import BadInput
from workbench.export import quality


def _random_logits(seed: int, n: int = 40, vocab: int = 300) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2.0, size=(n, vocab)).astype(np.float32)


def test_accumulator_matches_torch_reference_and_is_chunk_invariant():
    import torch

    src, cand = _random_logits(0), _random_logits(0) + _random_logits(1) * 0.3
    targets = np.random.default_rng(2).integers(0, src.shape[1], size=src.shape[0])
    whole = quality.QualityAccumulator()
    whole.update(src, cand, targets)
    chunked = quality.QualityAccumulator()
    for start in range(0, 40, 7):  # uneven chunks, mixing numpy and torch inputs
        sl = slice(start, start + 7)
        chunked.update(torch.from_numpy(src[sl]), cand[sl], torch.from_numpy(targets[sl]))
    a, b = whole.result(), chunked.result()
    assert a.n_tokens == b.n_tokens == 40
    for field in ("perplexity", "source_perplexity", "mean_kl", "top1_agreement", "kl_median", "kl_max"):
        assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-6), field

    p = torch.log_softmax(torch.from_numpy(src).double(), -1)
    q = torch.log_softmax(torch.from_numpy(cand).double(), -1)
    t = torch.from_numpy(targets)
    kl = torch.nn.functional.kl_div(q, p, log_target=True, reduction="none").sum(-1)
    assert a.mean_kl == pytest.approx(float(kl.mean()), rel=1e-5)
    assert a.perplexity == pytest.approx(math.exp(float(torch.nn.functional.nll_loss(q, t))), rel=1e-6)
    assert a.source_perplexity == pytest.approx(math.exp(float(torch.nn.functional.nll_loss(p, t))), rel=1e-6)
    assert a.top1_agreement == pytest.approx(float((p.argmax(-1) == q.argmax(-1)).double().mean()))
    assert 0 < a.top1_agreement < 1 and a.mean_kl > 0


def test_logprobs_equal_logits_and_identity_costs_nothing():
    import torch

    src = _random_logits(3)
    targets = np.arange(40) % 300
    from_logits = quality.QualityAccumulator()
    from_logits.update(src, src + 5.0, targets)  # a constant shift is the same distribution
    from_logprobs = quality.QualityAccumulator()
    from_logprobs.update(torch.log_softmax(torch.from_numpy(src), -1), src, targets)
    for r in (from_logits.result(), from_logprobs.result()):
        assert r.mean_kl == pytest.approx(0.0, abs=1e-6) and r.top1_agreement == 1.0
        assert r.perplexity == pytest.approx(r.source_perplexity, rel=1e-6)


def test_negative_targets_skipped_batches_flattened_and_padding_trimmed():
    src = _random_logits(4).reshape(2, 20, 300)
    cand = np.concatenate([src, np.full((2, 20, 12), -30.0, dtype=np.float32)], axis=-1)  # padded vocab
    targets = np.arange(40).reshape(2, 20)
    targets[:, -1] = -1
    acc = quality.QualityAccumulator()
    acc.update(src, cand, targets)
    r = acc.result()
    assert r.n_tokens == 38 and r.vocab_trimmed == 12 and r.mean_kl == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        acc.update(src[0], cand[0, :10], targets[0])
    with pytest.raises(BadInput, match="no tokens were scored"):
        quality.QualityAccumulator().result()


def test_measure_runs_the_source_once_per_window():
    calls = []

    def source(ids):
        calls.append(len(ids))
        return _random_logits(len(ids), n=len(ids))

    windows = [list(range(10)), list(range(5))]
    results = quality.measure(source, {"same": source, "flat": lambda ids: np.zeros((len(ids), 300))}, windows)
    assert results["flat"].perplexity == pytest.approx(300.0)  # a uniform candidate
    assert results["flat"].n_tokens == 13  # the last position of a window has no target
    assert results["same"].mean_kl == 0.0
    assert calls == [10, 10, 5, 5]  # per window: the shared source call, then "same" (the same function)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir))


def test_token_windows_cut_the_bundled_text(tokenizer):
    texts = quality.load_heldout_texts(None, tokenizer)
    assert len(texts) == 1 and "three dashes" not in texts[0] and texts[0].lstrip().startswith("The kettle")
    windows = quality.token_windows(tokenizer, texts, window=128)
    stream = tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    assert all(len(w) == 128 for w in windows[:-1]) and len(windows[-1]) >= 32
    assert [t for w in windows for t in w] == stream[: sum(len(w) for w in windows)]  # SmolLM2's tokenizer adds no BOS
    capped = quality.token_windows(tokenizer, texts, window=128, max_tokens=300)
    assert [len(w) for w in capped] == [128, 128, 44]
    with pytest.raises(BadInput, match="empty"):
        quality.token_windows(tokenizer, ["   "], window=64)


def test_heldout_jsonl_chat_items_rendered_with_the_template(tokenizer, tmp_path):
    items = tmp_path / "data.jsonl"
    items.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "reference": "4"}) + "\n")
    [text] = quality.load_heldout_texts(items, tokenizer)
    assert text == tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"},
                                                  {"role": "assistant", "content": "4"}], tokenize=False)
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert quality.load_heldout_texts(plain) == ["one", "two"]
    with pytest.raises(BadInput, match="no such file"):
        quality.load_heldout_texts(tmp_path / "missing.txt")

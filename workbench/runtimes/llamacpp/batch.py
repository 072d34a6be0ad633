"""Greedy generation of many prompts at once in one llama.cpp context, as llama.cpp's batched example and its
server's slots do: each prompt is a sequence of its own (seq_id) in a multi-sequence `llama_batch`, so one
decode call advances every running sequence by a token, and a finished sequence's slot takes the next prompt
(continuous batching). One token at a time, a decode is one matrix-vector product per weight; N sequences make
it a matrix-matrix product, which llama.cpp's CPU kernels (for Q8_0, Q4_0, f16) run several times faster per
token.

The stopping rules are those of llama-cpp-python's `create_completion`, which the one-at-a-time path
(workbench.runtimes.llamacpp.model.chat) goes through, so greedy outputs are the same text: llama.cpp's end-of-generation
tokens, the chat format's stop tokens (checked on the last *fed* token, as its stopping criteria are), stop
strings on the detokenized text after each token, and max_tokens.

The prompts' common prefix (a suite's system prompt, a fixed few-shot block) is evaluated once, into a sequence of
its own; each new sequence starts from a copy of its cache (llama.cpp's seq_cp, a copy of that sequence's buffer),
and only the rest of its prompt is evaluated. The KV cache is split per sequence (kv_unified off): with one unified
cache, every sequence's attention runs over all sequences' cells and greedy answers drift from one-at-a-time ones.
"""

import os
from collections import deque
from dataclasses import dataclass, field

from workbench.errors import EnvironmentProblem
from workbench.runtimes.llamacpp import native
from workbench.runtimes.llamacpp.native import captured_llama_log

CTX_PAD = 256  # llama.cpp rounds a context up to this; a multiple of it splits evenly across the sequences
MIN_SHARED_PREFIX = 8  # tokens; below this, copying a sequence's cache buffer costs more than it saves


@dataclass
class Request:
    prompt: list[int]
    max_tokens: int
    stop: list[bytes] = field(default_factory=list)


@dataclass
class _Slot:
    index: int
    seq: int
    request: Request
    pending: list[int]
    pos: int = 0
    out: list[int] = field(default_factory=list)
    multibyte_fix: int = 0

    def text(self, llm) -> bytes:
        return llm.detokenize(self.out, prev_tokens=self.request.prompt)

    def accept(self, llm, tok: int) -> bytes | None:
        """Take a generated token; the final text when it ends the completion, else None. llama-cpp-python's
        rules, in its order: a stop string (not while a multi-byte character is incomplete), then max_tokens."""
        self.out.append(tok)
        text = self.text(llm)
        for k, char in enumerate(text[-3:]):
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    self.multibyte_fix = num - k
        if self.multibyte_fix > 0:
            self.multibyte_fix -= 1
            return None
        for stop in self.request.stop:
            if stop in text:
                return text[:text.index(stop)]
        return text if len(self.out) >= self.request.max_tokens else None


def shared_prefix_length(prompts: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own (its first logits come
    from evaluating it); 0 when that is under MIN_SHARED_PREFIX."""
    n = min(len(os.path.commonprefix(prompts)), min(len(p) for p in prompts) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def _new_context(llama_cpp, llm, n_seq: int, n_ctx_seq: int):
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)  # the one-at-a-time settings
    params.n_ctx = n_ctx_seq * n_seq
    params.n_batch = params.n_ubatch = llm.n_batch
    params.n_seq_max = n_seq
    params.kv_unified = False  # each sequence attends over its own cells only
    params.no_perf = True
    with captured_llama_log() as log:  # llama.cpp logs its context set-up (warnings included) on every call
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
    if not ctx:
        raise EnvironmentProblem(f"llama.cpp could not create a {n_seq}-sequence context of {params.n_ctx} "
                                 f"tokens ({log[-1].strip() if log else 'no message'}); lower the batch size "
                                 "(a suite's generation.batch_size, or --batch-size for lm-eval tasks)")
    return ctx


def generate_batched(llm, requests: list[Request], *, n_parallel: int, stop_ids=(), n_ctx_seq: int | None = None,
                     progress=None) -> list[str]:
    """The greedy completion text of each request, decoding up to n_parallel sequences per llama.cpp call.

    The shared prefix is evaluated once; the rest of each prompt in a call of its own, in llm.n_batch chunks
    (mixed into a generation step, its tokens would change the micro-batches llama.cpp splits a call into, and with
    them the logits). Each generation step is one call for every running sequence, ordered by sequence id so that
    llama.cpp keeps them in one micro-batch."""
    import numpy as np

    llama_cpp = native.llama_cpp("Generating with a GGUF model")
    if not requests:
        return []
    n_parallel = max(1, min(n_parallel, len(requests)))
    longest = max(len(r.prompt) + r.max_tokens + 1 for r in requests)
    n_ctx_seq = -(-min(n_ctx_seq or longest, llm.n_ctx()) // CTX_PAD) * CTX_PAD
    n_shared = shared_prefix_length([r.prompt for r in requests])
    prefix_seq = n_parallel  # holds the shared prefix, when there is one
    ctx = _new_context(llama_cpp, llm, n_parallel + bool(n_shared), n_ctx_seq)
    batch = llama_cpp.llama_batch_init(max(llm.n_batch, n_parallel), 0, 1)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    stop_ids = set(stop_ids)
    results: list[str | None] = [None] * len(requests)
    queue = deque(range(len(requests)))
    free = set(range(n_parallel))
    running: dict[int, _Slot] = {}  # seq id -> slot
    try:
        mem = llama_cpp.llama_get_memory(ctx)

        def decode(entries: list[tuple[_Slot, int]], logits: bool = True) -> None:
            """Feed (slot, token) pairs at each slot's next position; logits for each slot's last one."""
            last = {slot.seq: n for n, (slot, _) in enumerate(entries)}
            for n, (slot, tok) in enumerate(entries):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = tok, slot.pos, 1
                batch.seq_id[n][0], batch.logits[n] = slot.seq, logits and last[slot.seq] == n
                slot.pos += 1
            batch.n_tokens = len(entries)
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise EnvironmentProblem(f"llama.cpp decode failed (code {rc}) with {len(running)} sequences")

        def step(slot: _Slot, at: int) -> None:
            """Take the greedy token at batch row `at` for the slot, or end its completion."""
            if slot.out and slot.out[-1] in stop_ids:  # the chat format's stop token, once fed (as there)
                return finish(slot, slot.text(llm))
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, at), shape=(n_vocab,))
            tok = int(np.argmax(logits))
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                return finish(slot, slot.text(llm))
            text = slot.accept(llm, tok)
            if text is not None:
                return finish(slot, text)
            slot.pending = [tok]

        def finish(slot: _Slot, text: bytes) -> None:
            results[slot.index] = text.decode("utf-8", errors="ignore")
            llama_cpp.llama_memory_seq_rm(mem, slot.seq, -1, -1)
            free.add(slot.seq)
            del running[slot.seq]
            if progress:
                progress(1)

        def evaluate(slot: _Slot, tokens: list[int], logits: bool = True) -> int:
            """Evaluate a slot's prompt tokens in llm.n_batch chunks; the batch row of the last one's logits."""
            for start in range(0, len(tokens), llm.n_batch):
                chunk = tokens[start:start + llm.n_batch]
                decode([(slot, tok) for tok in chunk], logits)
            return len(chunk) - 1

        if n_shared:
            evaluate(_Slot(-1, prefix_seq, requests[0], []), requests[0].prompt[:n_shared], logits=False)

        while queue or running:
            while queue and free:
                i = queue.popleft()
                req = requests[i]
                max_tokens = min(req.max_tokens, n_ctx_seq - len(req.prompt))
                if max_tokens <= 0:
                    raise EnvironmentProblem(f"prompt {i} has {len(req.prompt)} tokens, more than the "
                                             f"{n_ctx_seq}-token context")
                seq = min(free)  # low ids first: running ids stay contiguous, one micro-batch per step
                free.discard(seq)
                slot = running[seq] = _Slot(i, seq, Request(req.prompt, max_tokens, req.stop), [], pos=n_shared)
                if n_shared:  # the copy itself happens at the next decode
                    llama_cpp.llama_memory_seq_cp(mem, prefix_seq, seq, -1, -1)
                step(slot, evaluate(slot, req.prompt[n_shared:]))
            if running:
                slots = [running[seq] for seq in sorted(running)]
                decode([(slot, slot.pending[0]) for slot in slots])
                for n, slot in enumerate(slots):
                    step(slot, n)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return results

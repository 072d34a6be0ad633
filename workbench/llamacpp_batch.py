"""Greedy generation of many prompts at once in one llama.cpp context, as llama.cpp's batched example and its
server's slots do: each prompt is a sequence of its own (seq_id) in a multi-sequence `llama_batch`, so one
decode call advances every running sequence by a token (and feeds new prompts), and a finished sequence's slot
takes the next prompt (continuous batching). On a CPU a single sequence's decode is bound by reading the
weights; decoding N sequences per call reads them once.

The stopping rules are those of llama-cpp-python's `create_completion`, which the one-at-a-time path
(workbench.llamacpp.chat) goes through, so greedy outputs are the same text: llama.cpp's end-of-generation
tokens, the chat format's stop tokens (checked on the last *fed* token, as its stopping criteria are), stop
strings on the detokenized text after each token, and max_tokens.
"""

from collections import deque
from dataclasses import dataclass, field

from workbench.errors import EnvironmentProblem

N_BATCH = 512  # tokens per decode call (prompt chunks and one token per running sequence)
CTX_PAD = 256  # llama.cpp rounds a context up to this; a multiple of it splits evenly across the sequences


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


def generate_batched(llm, requests: list[Request], *, n_parallel: int, stop_ids=(), n_ctx_seq: int | None = None,
                     progress=None) -> list[str]:
    """The greedy completion text of each request, decoding up to n_parallel sequences per llama.cpp call."""
    import numpy as np

    from workbench.llamacpp import _llama_cpp

    llama_cpp = _llama_cpp("Generating with a GGUF model")
    if not requests:
        return []
    n_parallel = max(1, min(n_parallel, len(requests)))
    longest = max(len(r.prompt) + r.max_tokens + 1 for r in requests)
    n_ctx_seq = -(-min(n_ctx_seq or longest, llm.n_ctx()) // CTX_PAD) * CTX_PAD
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)  # the one-at-a-time settings
    params.n_ctx = n_ctx_seq * n_parallel
    params.n_batch = params.n_ubatch = N_BATCH
    params.n_seq_max = n_parallel
    params.kv_unified = False  # each sequence attends over its own cells only (no shared prefix here)
    params.no_perf = True
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=llm.verbose):  # llama.cpp logs its context set-up, as Llama() does
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
    if not ctx:
        raise EnvironmentProblem(f"llama.cpp could not create a {n_parallel}-sequence context of {params.n_ctx} "
                                 "tokens; lower generation.batch_size")
    batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    stop_ids = set(stop_ids)
    results: list[str | None] = [None] * len(requests)
    queue = deque(range(len(requests)))
    free = list(range(n_parallel))[::-1]
    active: list[_Slot] = []
    try:
        mem = llama_cpp.llama_get_memory(ctx)

        def finish(slot: _Slot, text: bytes) -> None:
            results[slot.index] = text.decode("utf-8", errors="ignore")
            llama_cpp.llama_memory_seq_rm(mem, slot.seq, -1, -1)
            free.append(slot.seq)
            active.remove(slot)
            if progress:
                progress(1)

        while queue or active:
            while queue and free:
                i = queue.popleft()
                req = requests[i]
                max_tokens = min(req.max_tokens, n_ctx_seq - len(req.prompt))
                if max_tokens <= 0:
                    raise EnvironmentProblem(f"prompt {i} has {len(req.prompt)} tokens, more than the "
                                             f"{n_ctx_seq}-token context")
                active.append(_Slot(i, free.pop(), Request(req.prompt, max_tokens, req.stop), list(req.prompt)))
            # Running sequences' next tokens first, then prompt chunks, within one call's budget.
            n, wants = 0, []
            for slot in sorted(active, key=lambda s: len(s.pending)):
                take = slot.pending[:N_BATCH - n]
                if not take:
                    break
                for tok in take:
                    batch.token[n], batch.pos[n], batch.n_seq_id[n] = tok, slot.pos, 1
                    batch.seq_id[n][0], batch.logits[n] = slot.seq, False
                    slot.pos += 1
                    n += 1
                del slot.pending[:len(take)]
                if not slot.pending:
                    batch.logits[n - 1] = True
                    wants.append((slot, n - 1))
            batch.n_tokens = n
            rc = llama_cpp.llama_decode(ctx, batch)
            if rc != 0:
                raise EnvironmentProblem(f"llama.cpp decode failed (code {rc}) with {len(active)} sequences")
            for slot, at in wants:
                if slot.out and slot.out[-1] in stop_ids:  # the chat format's stop token, once fed (as there)
                    finish(slot, slot.text(llm))
                    continue
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, at), shape=(n_vocab,))
                tok = int(np.argmax(logits))
                if llama_cpp.llama_vocab_is_eog(vocab, tok):
                    finish(slot, slot.text(llm))
                    continue
                text = slot.accept(llm, tok)
                if text is not None:
                    finish(slot, text)
                else:
                    slot.pending = [tok]
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return results

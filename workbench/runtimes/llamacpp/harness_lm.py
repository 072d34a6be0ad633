"""An lm-eval model backend for GGUF files, run in-process by llama.cpp (llama-cpp-python).

Registered in lm-eval's model registry as "wb-llamacpp", so lm-eval's own task code builds the prompts,
filters the answers and scores them, exactly as for the HF model. (lm-eval's built-in "gguf" backend talks
to a llama.cpp server over HTTP; this one loads the file the way `wb` verifies exports.)

- generate_until: greedy completion from the prompt's tokens, stopped at the task's `until` strings and the
  model's end-of-generation token, `batch_size` sequences decoded together.
- loglikelihood / loglikelihood_rolling: llama.cpp exposes the logits of every evaluated position when the
  model is loaded with logits_all, so continuation log-probabilities are computed from them (log-softmax).
  Requests are scored in token order, so a question's answer choices (and questions sharing a few-shot
  header) follow each other, and each evaluates only what it does not share with the previous one.
"""

from dataclasses import dataclass
from pathlib import Path

from workbench.runtimes.llamacpp.model import gguf_metadata, load_gguf, sequence_logits
from workbench.system.extras import require

MODEL_NAME = "wb-llamacpp"
N_CTX_CAP = 4096
DEFAULT_PARALLEL = 8  # sequences decoded together by generate_until when lm-eval's batch size is "auto"

_model_mod = require("lm_eval.api.model", "Evaluating a GGUF file with lm-eval", "eval")
_registry = require("lm_eval.api.registry", "Evaluating a GGUF file with lm-eval", "eval")
# lm-eval fills its registry with the built-in backends (lazily) only while it is empty: do that first
require("lm_eval.models", "Evaluating a GGUF file with lm-eval", "eval")


@dataclass
class GenerationRequest:
    tokens: list[int]
    max_tokens: int
    until: list[str]
    sampling: dict | None  # temperature and top_p; None: greedy


@_registry.register_model(MODEL_NAME)
class LlamaCppLM(_model_mod.TemplateLM):
    def __init__(self, model_path: str, n_ctx: int | None = None, max_gen_toks: int = 256,
                 batch_size: int | str = 1, device: str | None = None, reuse_prefix: bool = True, **_ignored):
        super().__init__()
        self.model_path = Path(model_path)
        self.meta = gguf_metadata(self.model_path)
        self.n_ctx = int(n_ctx or min(self.meta.get("context_length") or 2048, N_CTX_CAP))
        self.llm = load_gguf(self.model_path, n_ctx=self.n_ctx, logits_all=True)
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos = bool(self.meta.get("add_bos_token"))
        self.reuse_prefix = reuse_prefix
        self.n_parallel = int(batch_size) if str(batch_size).isdigit() else DEFAULT_PARALLEL  # "auto": the default

    # ---- tokens

    @property
    def eot_token_id(self) -> int:
        return self.llm.token_eos()

    @property
    def max_length(self) -> int:
        return self.n_ctx

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        add_bos = self.add_bos if add_special_tokens is None else bool(add_special_tokens) and self.add_bos
        return self.llm.tokenize(string.encode("utf-8"), add_bos=add_bos, special=True)

    def tok_decode(self, tokens: list[int]) -> str:
        return self.llm.detokenize(tokens).decode("utf-8", errors="replace")

    # ---- scoring

    def _continuation_logprob(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        np = require("numpy", "Scoring with llama.cpp", "eval")
        whole = (context + continuation)[-(self.n_ctx + 1):]
        n_cont = len(continuation)
        logits = sequence_logits(self.llm, whole[:-1], reuse_prefix=self.reuse_prefix)[-n_cont:].astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        target = np.array(whole[-n_cont:])
        total = float(logprobs[np.arange(n_cont), target].sum())
        greedy = bool((logprobs.argmax(axis=1) == target).all())
        return total, greedy

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        tqdm = require("tqdm", "Progress bars", "eval").tqdm
        order = sorted(range(len(requests)), key=lambda i: requests[i][1] + requests[i][2])
        out: list = [None] * len(requests)
        for i in tqdm(order, desc="llama.cpp loglikelihood", disable=disable_tqdm):
            key, context, continuation = requests[i]
            out[i] = self._continuation_logprob(context, continuation)
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, out[i])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        tqdm = require("tqdm", "Progress bars", "eval").tqdm
        utils = require("lm_eval.utils", "Evaluating a GGUF file with lm-eval", "eval")
        out = []
        for (string,) in tqdm([r.args for r in requests], desc="llama.cpp rolling", disable=disable_tqdm):
            windows = utils.get_rolling_token_windows(
                token_list=self.tok_encode(string, add_special_tokens=False), prefix_token=self.prefix_token_id,
                max_seq_len=self.n_ctx, context_len=1)
            total = 0.0
            for context, continuation in map(utils.make_disjoint_window, windows):
                total += self._continuation_logprob(context, continuation)[0]
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return out

    # ---- generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy requests decode `batch_size` at a time in one llama.cpp context (workbench/runtimes/llamacpp/batch.py:
        a common few-shot prefix is evaluated once); sampled ones go one at a time through llama-cpp-python's
        sampler. Each answer is cut at its first stop string, as lm-eval's HF backend does."""
        from workbench.runtimes.llamacpp.batch import Request, generate_batched

        tqdm = require("tqdm", "Progress bars", "eval").tqdm
        asked = [r.args for r in requests]
        parsed = [self._generation_request(context, gen_kwargs) for context, gen_kwargs in asked]
        texts: list[str] = [""] * len(requests)
        greedy = [i for i, p in enumerate(parsed) if p.sampling is None]
        with tqdm(total=len(requests), desc="llama.cpp generate_until", disable=disable_tqdm) as bar:
            batched = generate_batched(
                self.llm, [Request(parsed[i].tokens, parsed[i].max_tokens, [s.encode("utf-8") for s in parsed[i].until])
                           for i in greedy], n_parallel=self.n_parallel, progress=bar.update)
            for i, text in zip(greedy, batched):
                texts[i] = text
            for i, p in enumerate(parsed):
                if p.sampling is not None:
                    texts[i] = self.complete_one(p)
                    bar.update(1)
        for i, ((context, gen_kwargs), p) in enumerate(zip(asked, parsed)):
            for stop in p.until:
                texts[i] = texts[i].split(stop)[0]
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), texts[i])
        return texts

    def _generation_request(self, context: str, gen_kwargs: dict | None) -> GenerationRequest:
        kwargs = dict(gen_kwargs or {})
        until = kwargs.pop("until", None) or []
        until = [s for s in ([until] if isinstance(until, str) else until) if s]
        max_tokens = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
        sample = bool(kwargs.pop("do_sample", False)) and float(kwargs.get("temperature", 0) or 0) > 0
        sampling = {"temperature": float(kwargs["temperature"]), "top_p": float(kwargs.get("top_p", 1.0))} \
            if sample else None
        tokens = self.tok_encode(context)[-(self.n_ctx - max_tokens):]
        return GenerationRequest(tokens, max_tokens, until, sampling)

    def complete_one(self, request: GenerationRequest) -> str:
        """One completion through llama-cpp-python's create_completion from an empty context: greedy (top_k 1)
        unless the request samples."""
        sampling = request.sampling or {"temperature": 0.0, "top_p": 1.0}
        self.llm.reset()
        res = self.llm.create_completion(
            prompt=request.tokens, max_tokens=request.max_tokens, stop=request.until,
            temperature=sampling["temperature"], top_p=sampling["top_p"], top_k=0 if request.sampling else 1,
            repeat_penalty=1.0, seed=0,
        )
        return res["choices"][0]["text"]

    # ---- chat template (the one embedded in the GGUF, as the file will be served)

    @property
    def tokenizer_name(self) -> str:
        return f"gguf:{self.model_path.name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.meta.get("chat_template") if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        from workbench.errors import BadInput

        template = self.meta.get("chat_template")
        if not template:
            raise BadInput(f"GGUF '{self.model_path}': no tokenizer.chat_template in the file")
        formats = require("llama_cpp.llama_chat_format", "Chat templates in llama.cpp", "gguf")
        eos = self.tok_decode([self.llm.token_eos()])
        bos = self.tok_decode([self.llm.token_bos()]) if self.llm.token_bos() >= 0 else ""
        formatter = formats.Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos,
                                                add_generation_prompt=add_generation_prompt)
        return formatter(messages=chat_history).prompt

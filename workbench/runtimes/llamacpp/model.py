"""The llama.cpp runtime (through llama-cpp-python): load a GGUF and chat with it the way it will be served,
with the chat template embedded in the file, plus reading a GGUF's metadata.
"""

import json
from collections import Counter
from pathlib import Path

from workbench.chat.format import derive
from workbench.chat.template import render_template
from workbench.checkpoints.gguf_file import check_gguf_magic
from workbench.errors import BadInput
from workbench.runtimes.llamacpp import native
from workbench.runtimes.llamacpp.native import captured_llama_log, cpu_threads
from workbench.system.extras import require

SEED = 0
DEFAULT_TEMPLATE = "chat_template.default"  # the name llama-cpp-python gives tokenizer.chat_template


def load_gguf(path, n_ctx: int = 2048, n_threads: int | None = None, *, logits_all: bool = False,
              lora_path=None):
    """A llama_cpp.Llama for the file (with a GGUF LoRA adapter applied when lora_path is given), set to chat
    with the file's own Jinja chat template."""
    path = Path(path)
    check_gguf_magic(path)
    if lora_path is not None:
        check_gguf_magic(Path(lora_path))
    llama_cpp = native.llama_cpp("Running a GGUF model")
    # Naming the template's handler explicitly stops llama-cpp-python from swapping a template it recognizes
    # (ChatML, Llama 3, Mistral) for its own hand-written formatter, which can differ (e.g. a default system
    # prompt). A file without a template would otherwise fall back to "llama-2": chat() refuses it instead.
    return llama_cpp.Llama(
        model_path=str(path), n_ctx=n_ctx, n_threads=n_threads or cpu_threads(), seed=SEED,
        verbose=False, logits_all=logits_all, chat_format=DEFAULT_TEMPLATE,
        **({"lora_path": str(lora_path)} if lora_path is not None else {}),
    )


def _require_template(llm) -> None:
    if "tokenizer.chat_template" not in llm.metadata:
        raise BadInput(f"GGUF '{llm.model_path}': no tokenizer.chat_template in the file, so it can't be chatted "
                       "with as it will be served; re-export it from a checkpoint with a chat template")


def stop_token_ids(llm, tokens) -> set[int]:
    """The ids of token strings in the model's vocabulary (each one token when special tokens are parsed)."""
    ids = set()
    for token in tokens:
        parsed = llm.tokenize(token.encode("utf-8"), add_bos=False, special=True)
        if len(parsed) == 1:
            ids.add(int(parsed[0]))
    return ids


def chat_formatter(llm, chat_format, template_variables: dict | None = None):
    """The file's own chat template as llama-cpp-python's Jinja2 formatter, stopping at every ChatFormat stop
    token on top of llama.cpp's end-of-generation tokens: a base model's GGUF may mark only <eos> as one.
    `template_variables` (enable_thinking) are set at the template's top, so that the chat handler of
    create_chat_completion, which passes no such variable, renders with them too."""
    native.llama_cpp("Chatting with a GGUF model")
    from llama_cpp import llama_chat_format

    _require_template(llm)
    piece = lambda i: llm.detokenize([i], special=True).decode("utf-8", errors="replace") if i >= 0 else ""
    # JSON's true/false/numbers/strings are Jinja literals too; trim_blocks drops nothing here (no newline follows)
    preamble = "".join(f"{{% set {k} = {json.dumps(v)} %}}" for k, v in (template_variables or {}).items())
    return llama_chat_format.Jinja2ChatFormatter(
        template=preamble + llm.metadata["tokenizer.chat_template"], eos_token=piece(llm.token_eos()),
        bos_token=piece(llm.token_bos()), stop_token_ids=sorted(stop_token_ids(llm, chat_format.stop_tokens)),
    )


def chat_batched(llm, formatter, messages_list: list[list[dict]], max_tokens: int, stop: list[str] | None = None,
                 *, n_parallel: int, progress=None, tools: list[list[dict] | None] | None = None) -> list[str]:
    """chat()'s greedy answers, decoded n_parallel conversations at a time (workbench/runtimes/llamacpp/batch.py): each
    prompt is formatted and tokenized as llama-cpp-python's chat handler does for `formatter` (with each
    conversation's `tools`)."""
    from workbench.runtimes.llamacpp.batch import Request, generate_batched

    requests = []
    for messages, functions in zip(messages_list, tools or [None] * len(messages_list)):
        result = formatter(messages=messages, tools=functions)
        prompt = llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        extra = [] if result.stop is None else result.stop if isinstance(result.stop, list) else [result.stop]
        requests.append(Request([int(t) for t in prompt], max_tokens, [x.encode("utf-8") for x in [*(stop or []), *extra]]))
    return generate_batched(llm, requests, n_parallel=n_parallel, stop_ids=formatter.stop_token_ids or (),
                            progress=progress)


def chat(llm, messages_list: list[list[dict]], max_tokens: int, stop: list[str] | None = None,
         temperature: float = 0.0, seed: int = SEED, tools: list[dict] | None = None) -> list[str]:
    """One answer per conversation (greedy at temperature 0), formatted with the GGUF's chat template and
    stopped at its end-of-generation tokens (and a ChatFormat's, with chat_formatter's handler). Each conversation
    starts from an empty context, so answers don't depend on the order of the list."""
    _require_template(llm)
    answers = []
    for messages in messages_list:
        llm.reset()
        out = llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, stop=stop or [], temperature=temperature,
            repeat_penalty=1.0, seed=seed, **({"tools": tools} if tools else {}),
        )
        answers.append(out["choices"][0]["message"]["content"] or "")
    return answers


def chat_prompt_tokens(llm, messages: list[dict]) -> list[int]:
    """The token ids create_chat_completion actually feeds the model for `messages` (template + tokenizer)."""
    _require_template(llm)
    llm.reset()
    out = llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
    n = out["usage"]["prompt_tokens"]
    return [int(t) for t in llm.input_ids[:n]]


def gguf_tokenizer(path):
    """fn(text) -> token ids as llama.cpp tokenizes a prompt from the file's vocabulary (special tokens parsed,
    no BOS added), loading the vocabulary only."""
    path = Path(path)
    check_gguf_magic(path)
    llama_cpp = native.llama_cpp("Tokenizing with a GGUF's vocabulary")
    vocab = _vocab_only(llama_cpp, path)

    def tokenize(text: str) -> list[int]:
        return [int(t) for t in vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)]

    return tokenize


def greedy_tokens(llm, prompt: list[int], max_tokens: int, stop_ids=()) -> tuple[list[int], int | None]:
    """Greedy continuation of `prompt` as token ids, and the end-of-generation token (llama.cpp's, or one of
    stop_ids) that stopped it (None when max_tokens ran out first). Token-level, so special tokens in the
    output are seen as such."""
    llama_cpp = native.llama_cpp("Generating with a GGUF model")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    stop_ids = set(stop_ids)
    out: list[int] = []
    llm.reset()
    for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        if token in stop_ids or llama_cpp.llama_vocab_is_eog(vocab, token):
            return out, int(token)
        out.append(int(token))
        if len(out) >= max_tokens:
            break
    return out, None


def generation_speed(llm, prompt: list[int], n_tokens: int = 64) -> float:
    """Greedy decoding speed in tokens per second (after the prompt is processed; end-of-generation ignored)."""
    import time

    llm.reset()
    stamps = []
    for _ in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
        stamps.append(time.perf_counter())
        if len(stamps) > n_tokens:
            break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0


def sequence_logits(llm, tokens: list[int], *, reuse_prefix: bool = False):
    """Next-token logits at every position of `tokens` (needs load_gguf(..., logits_all=True)); numpy [n, vocab].
    With reuse_prefix, the tokens this context already evaluated that `tokens` starts with are kept (their KV
    cells and logits rows) and only the rest is evaluated: a question's answer choices share its prompt."""
    keep = 0
    if reuse_prefix and llm.n_tokens:
        keep = llm.longest_token_prefix(llm.input_ids[:llm.n_tokens].tolist(), tokens)
    # keep == len(tokens): evaluated already (the previous choice of a 1-token answer), so its rows are used as
    # they are. Evaluating that last token again, alone, gives other logits than the batched pass (~1 logit here).
    if keep < len(tokens):
        if keep and llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.n_tokens = keep
        else:
            llm.reset()
            keep = 0
        llm.eval(tokens[keep:])
    return llm.scores[: len(tokens)].copy()


def _vocab_only(llama_cpp, path: Path):
    """A vocabulary-only Llama; llama.cpp's context warnings for it (a file without context_length) are dropped."""
    with captured_llama_log():
        return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


def control_tokens(path) -> dict:
    """A GGUF vocabulary's control tokens (text), every id's text for the metadata's token ids, and
    runtime_metadata(): what ChatFormat needs from a file (vocabulary-only load)."""
    path = Path(path)
    check_gguf_magic(path)
    llama_cpp = native.llama_cpp("Reading a GGUF's vocabulary")
    vocab_llm = _vocab_only(llama_cpp, path)
    try:
        meta = _runtime_metadata(dict(vocab_llm.metadata))
        vocab = llama_cpp.llama_model_get_vocab(vocab_llm.model)
        text = lambda i: llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8", errors="replace")
        control = {text(i) for i in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_control(vocab, i)}
        ids = {meta[k] for k in ("bos_token_id", "eos_token_id", "eot_token_id") if meta.get(k) is not None}
        return {"metadata": meta, "control": control, "text": {i: text(i) for i in ids}}
    finally:
        vocab_llm.close()


def runtime_metadata(path) -> dict:
    """The keys gguf_metadata() returns except tensor_types, as llama.cpp itself reads them (vocabulary-only
    load: well under a second, where gguf-py's reader parses every vocabulary string)."""
    path = Path(path)
    check_gguf_magic(path)
    llama_cpp = native.llama_cpp("Reading GGUF metadata")
    vocab = _vocab_only(llama_cpp, path)
    try:
        return _runtime_metadata(dict(vocab.metadata))
    finally:
        vocab.close()


def _runtime_metadata(kv: dict) -> dict:
    gguf = require("gguf", "Reading GGUF metadata", "gguf")

    def number(key):
        return int(kv[key]) if kv.get(key) not in (None, "") else None

    arch = kv.get("general.architecture")
    file_type = number("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    add_bos = kv.get("tokenizer.ggml.add_bos_token")
    return {"architecture": arch, "name": kv.get("general.name"), "file_type": file_type_name,
            "context_length": number(f"{arch}.context_length") if arch else None,
            "chat_template": kv.get("tokenizer.chat_template"), "bos_token_id": number("tokenizer.ggml.bos_token_id"),
            "eos_token_id": number("tokenizer.ggml.eos_token_id"), "eot_token_id": number("tokenizer.ggml.eot_token_id"),
            "add_bos_token": None if add_bos is None else add_bos == "true"}


def gguf_metadata(path) -> dict:
    """A few keys of a GGUF file, read with the gguf package (no model load)."""
    path = Path(path)
    check_gguf_magic(path)
    gguf = require("gguf", "Reading GGUF metadata", "gguf")
    reader = gguf.GGUFReader(path)

    def value(key):
        field = reader.get_field(key)
        return None if field is None else field.contents()

    arch = value("general.architecture")
    file_type = value("general.file_type")
    try:
        file_type_name = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {
        "architecture": arch,
        "name": value("general.name"),
        "file_type": file_type_name,
        "context_length": value(f"{arch}.context_length") if arch else None,
        "chat_template": value("tokenizer.chat_template"),
        "bos_token_id": value("tokenizer.ggml.bos_token_id"),
        "eos_token_id": value("tokenizer.ggml.eos_token_id"),
        "eot_token_id": value("tokenizer.ggml.eot_token_id"),
        "add_bos_token": value("tokenizer.ggml.add_bos_token"),
        "tensor_types": dict(Counter(t.tensor_type.name for t in reader.tensors).most_common()),
    }


def gguf_chat_format(path):
    """A GGUF file's format, from its metadata (template, EOS/EOT ids) and its vocabulary's control tokens,
    rendered the way llama.cpp's Jinja chat handler renders it."""
    vocab = control_tokens(path)
    meta = vocab["metadata"]
    template = meta.get("chat_template")
    tokens = {"bos_token": vocab["text"].get(meta.get("bos_token_id"), ""),
              "eos_token": vocab["text"].get(meta.get("eos_token_id"), "")}
    eos = [vocab["text"].get(meta.get(k)) for k in ("eos_token_id", "eot_token_id")]
    return derive(template, lambda m, g: render_template(template, m, g, special_tokens=tokens),
                  vocab["control"], eos)

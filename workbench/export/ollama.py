"""An Ollama bundle for a GGUF: a Modelfile whose TEMPLATE (Go text/template, Ollama's syntax) is derived from
the tokenizer's Jinja chat template, whose PARAMETER stop lists every end-of-turn and EOS token, and a
round-trip check that the Go template renders every sample conversation token for token like the Jinja one.

The derivation renders the Jinja template on sentinel conversations and reads off what it puts around each
role's content, the generation prompt and any default system prompt it injects. Templates that do not fit
that shape (system text folded into the first user turn, per-position logic, ...) are refused, and the
round-trip check catches whatever the derivation got wrong.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from workbench.errors import BadInput

ROLES = ("system", "user", "assistant")
_SENT = {"system": "WBSENTSYSTEMQ", "user": "WBSENTUSERQ", "assistant": "WBSENTASSISTANTQ", "user2": "WBSENTUSERTWOQ"}

SAMPLE_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Color of the sky?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about cats."}],
    [{"role": "system", "content": "You are terse.\nNever use lists."}, {"role": "user", "content": "Name a fruit."},
     {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another, with \"quotes\" and é ü 東京."}],
    [{"role": "user", "content": "Write {{ .Prompt }} literally."}, {"role": "assistant", "content": "{{ .Prompt }}"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "one"}, {"role": "assistant", "content": "1"},
     {"role": "user", "content": "two"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "  three  "}],
]


class TemplateNotExpressible(BadInput):
    pass


@dataclass
class ChatShape:
    """What the Jinja template puts around each message, read off sentinel renderings."""

    prefix: dict[str, str]
    suffix: dict[str, str]
    generation: str  # appended when the last message is not the assistant's
    start: str = ""  # emitted once before the first message (e.g. a BOS text)
    default_system: str | None = None  # injected when the first message is not a system message
    notes: list[str] = field(default_factory=list)


def jinja_render(tokenizer, messages: list[dict], generation: bool | None = None) -> str:
    if generation is None:
        generation = messages[-1]["role"] != "assistant"
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def _between(text: str, marks: list[str]) -> list[str]:
    parts, pos = [], 0
    for mark in marks:
        at = text.find(mark, pos)
        if at < 0 or text.count(mark) != 1:
            raise TemplateNotExpressible(f"the chat template does not render each message's content once and in "
                                         f"order (content {mark!r} not found as such)")
        parts.append(text[pos:at])
        pos = at + len(mark)
    parts.append(text[pos:])
    return parts


def _strip(text: str, prefix: str = "", suffix: str = "", what: str = "") -> str:
    if not text.startswith(prefix) or not text.endswith(suffix) or len(text) < len(prefix) + len(suffix):
        raise TemplateNotExpressible(f"the chat template's {what} differs between conversations; an Ollama "
                                     "template with one prefix and suffix per role cannot express it")
    return text[len(prefix): len(text) - len(suffix)]


def derive_shape(tokenizer) -> ChatShape:
    s, u, a, u2 = _SENT["system"], _SENT["user"], _SENT["assistant"], _SENT["user2"]
    msg = lambda role, content: {"role": role, "content": content}
    try:
        full = jinja_render(tokenizer, [msg("system", s), msg("user", u), msg("assistant", a), msg("user", u2)], False)
        ends_assistant = jinja_render(tokenizer, [msg("system", s), msg("user", u), msg("assistant", a)], False)
        no_system = jinja_render(tokenizer, [msg("user", u)], False)
        with_gen = jinja_render(tokenizer, [msg("user", u)], True)
    except Exception as exc:  # noqa: BLE001 - jinja TemplateError, raise_exception() in the template, ...
        raise TemplateNotExpressible(f"the chat template failed on a system/user/assistant conversation ({exc})") from None
    head, sys_user, user_asst, asst_user, tail = _between(full, [s, u, a, u2])
    post = {"user": tail}
    pre = {"assistant": _strip(user_asst, post["user"], "", "text after a user message")}
    post["assistant"] = _between(ends_assistant, [s, u, a])[-1]
    pre["user"] = _strip(asst_user, post["assistant"], "", "text after an assistant message")
    post["system"] = _strip(sys_user, "", pre["user"], "text between the system and first user message")
    generation = _strip(with_gen, no_system, "", "generation prompt")
    lead = _strip(no_system, "", pre["user"] + u + post["user"], "start of a conversation without system message")
    shape = ChatShape(prefix={"system": head, **pre}, suffix=post, generation=generation)
    if lead and lead.startswith(head) and lead.endswith(post["system"]) and len(lead) >= len(head) + len(post["system"]):
        shape.default_system = lead[len(head): len(lead) - len(post["system"])]
    elif lead and head.startswith(lead):
        shape.start, shape.prefix["system"] = lead, head[len(lead):]
    elif lead:
        raise TemplateNotExpressible(f"the chat template starts a conversation without system message with "
                                     f"{lead!r}, which is neither a default system message nor a fixed start")
    return shape


def _go(text: str) -> str:
    """A Go string literal inside an action, so the template's own whitespace trimming never touches it."""
    return "{{ " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def go_template(shape: ChatShape) -> str:
    first = ""
    if shape.start:
        first = "{{- if eq $i 0 }}" + _go(shape.start) + "{{ end }}\n"
    if shape.default_system is not None:
        block = shape.prefix["system"] + shape.default_system + shape.suffix["system"]
        first += "{{- if and (eq $i 0) (ne $m.Role \"system\") }}" + _go(block) + "{{ end }}\n"
    branches = []
    for n, role in enumerate(ROLES):
        keyword = "if" if n == 0 else "else if"
        branches.append(f"{{{{- {keyword} eq $m.Role \"{role}\" }}}}{_go(shape.prefix[role])}{{{{ $m.Content }}}}"
                        f"{_go(shape.suffix[role])}\n")
    return ("{{- range $i, $m := .Messages }}\n" + first + "".join(branches) + "{{- end }}\n"
            "{{- if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role \"assistant\") }}" + _go(shape.generation)
            + "{{ end }}\n{{- end }}")


def ollama_values(messages: list[dict]) -> dict:
    """The data Ollama's chat endpoint executes the template with (its template.go collate()): consecutive
    messages of one role merged with a blank line, all system messages also joined into .System."""
    collated: list[dict] = []
    for m in messages:
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool":
            collated[-1]["Content"] += "\n\n" + m["content"]
        else:
            collated.append({"Role": m["role"], "Content": m["content"]})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": collated, "Response": ""}


def special_tokens_in(tokenizer, text: str) -> list[str]:
    specials = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(i) for i in dict.fromkeys(ids) if i in specials]


def end_of_turn_tokens(tokenizer, shape: ChatShape, eos_ids=()) -> list[str]:
    """Tokens that end the assistant's turn (the special tokens of its suffix) and every EOS id
    (tokenizer, generation_config, GGUF metadata)."""
    tokens = special_tokens_in(tokenizer, shape.suffix["assistant"])
    ids = [i for i in [tokenizer.eos_token_id, *eos_ids] if i is not None]
    tokens += [tokenizer.convert_ids_to_tokens(int(i)) for i in ids]
    return list(dict.fromkeys(tokens))


def stop_tokens(tokenizer, shape: ChatShape, eos_ids=()) -> list[str]:
    """End-of-turn/EOS tokens, plus the special tokens that open a user turn, so a model that starts inventing
    the user's next turn is cut off there."""
    return list(dict.fromkeys(end_of_turn_tokens(tokenizer, shape, eos_ids) + special_tokens_in(tokenizer, shape.prefix["user"])))


def generation_defaults(model_dir: Path) -> dict:
    """Sampling defaults the checkpoint ships in generation_config.json, in Ollama's parameter names."""
    try:
        cfg = json.loads((Path(model_dir) / "generation_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    names = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "repetition_penalty": "repeat_penalty"}
    if not cfg.get("do_sample", True):
        return {"temperature": 0}
    return {ollama: cfg[hf] for hf, ollama in names.items() if cfg.get(hf) is not None}


def modelfile_text(gguf_name: str, template: str, stops: list[str], parameters: dict, *, adapter: str | None = None,
                   source: str = "") -> str:
    if '"""' in template:
        raise TemplateNotExpressible('the derived template contains """, which a Modelfile TEMPLATE cannot hold')
    lines = [f"# Ollama Modelfile written by ckpt-workbench{f' for {source}' if source else ''}.",
             f"# Build: ollama create NAME -f {'<this file>'}", f"FROM ./{gguf_name}"]
    if adapter:
        lines.append(f"ADAPTER ./{adapter}")
    lines.append(f'TEMPLATE """{template}"""')
    lines += [f"PARAMETER stop {json.dumps(s, ensure_ascii=False)}" for s in stops]
    lines += [f"PARAMETER {k} {v}" for k, v in parameters.items()]
    return "\n".join(lines) + "\n"


_TEMPLATE_RE = re.compile(r'^TEMPLATE """(.*?)"""', re.DOTALL | re.MULTILINE)
_STOP_RE = re.compile(r"^PARAMETER\s+stop\s+(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def parse_modelfile(text: str) -> dict:
    """TEMPLATE and the stop list of a Modelfile (the parts the round-trip check needs)."""
    m = _TEMPLATE_RE.search(text)
    stops = []
    for raw in _STOP_RE.findall(text):
        stops.append(json.loads(raw) if raw.startswith('"') else raw)
    return {"template": m.group(1) if m else None, "stops": stops}


def roundtrip_check(modelfile: str, tokenizer, end_of_turn: list[str], conversations=None, *, renderer=None,
                    llama_tokenize=None) -> dict:
    """Render each conversation with the Modelfile's Go template and with the Jinja template; compare tokens
    (HF tokenizer on both; also llama.cpp's tokenizer on the Go rendering when given). Every end-of-turn token
    must be in the stop list."""
    from workbench.export import gotemplate

    render = renderer or gotemplate.render
    parsed = parse_modelfile(modelfile)
    conversations = conversations or SAMPLE_CONVERSATIONS
    results = []
    for messages in conversations:
        expected_text = jinja_render(tokenizer, messages)
        expected = tokenizer(expected_text, add_special_tokens=False)["input_ids"]
        row = {"roles": [m["role"] for m in messages], "n_tokens": len(expected)}
        try:
            got_text = render(parsed["template"] or "", ollama_values(messages))
        except Exception as exc:  # noqa: BLE001 - an unparsable or failing template fails the check, with its reason
            results.append(row | {"match": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        got = tokenizer(got_text, add_special_tokens=False)["input_ids"]
        row["match"] = got == expected
        if llama_tokenize is not None:
            row["llama_cpp_tokens_match"] = llama_tokenize(got_text) == expected
            row["match"] = row["match"] and row["llama_cpp_tokens_match"]
        if not row["match"]:
            at = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
            row["first_difference"] = {"token": at, "go": tokenizer.decode(got[at: at + 8]),
                                       "jinja": tokenizer.decode(expected[at: at + 8])}
        results.append(row)
    missing = [t for t in end_of_turn if t not in parsed["stops"]]
    return {"conversations": results, "matched": sum(r["match"] for r in results), "total": len(results),
            "stops": parsed["stops"], "end_of_turn": end_of_turn, "missing_stops": missing,
            "passed": bool(results) and all(r["match"] for r in results) and not missing}


def describe_failure(check: dict) -> str:
    if check["missing_stops"]:
        return f"end-of-turn token(s) {', '.join(check['missing_stops'])} missing from PARAMETER stop"
    bad = next(r for r in check["conversations"] if not r["match"])
    detail = bad.get("error") or f"first difference at token {bad['first_difference']['token']}: " \
        f"Go {bad['first_difference']['go']!r} vs Jinja {bad['first_difference']['jinja']!r}"
    return f"Go template rendering differs from the Jinja chat template for roles {bad['roles']}: {detail}"


README = """# Running these GGUF files with Ollama

Each `NAME.Modelfile` here serves the GGUF file of the same name with the checkpoint's own chat template
(translated to Ollama's Go template syntax and checked token for token against the Jinja original) and a stop
list holding every end-of-turn and EOS token:

{commands}

then `ollama run NAME`. The Modelfiles refer to the GGUF files by relative path: keep them in this folder.
"""


def write_bundle(gguf_path: Path, tokenizer, source_dir: Path, eos_ids=(), *, adapter: str | None = None,
                 base_gguf: str | None = None, llama_tokenize=None) -> dict:
    """Write NAME.Modelfile beside gguf_path and check it; returns the record for the export. A chat template
    Ollama's syntax cannot express yields {"error": ...} and no Modelfile."""
    gguf_path = Path(gguf_path)
    try:
        shape = derive_shape(tokenizer)
        template = go_template(shape)
        stops = stop_tokens(tokenizer, shape, eos_ids)
        text = modelfile_text(base_gguf or gguf_path.name, template, stops, generation_defaults(source_dir),
                              adapter=adapter, source=str(source_dir))
    except TemplateNotExpressible as exc:
        return {"error": str(exc)}
    check = roundtrip_check(text, tokenizer, end_of_turn_tokens(tokenizer, shape, eos_ids),
                            llama_tokenize=llama_tokenize)
    path = gguf_path.parent / f"{gguf_path.stem}.Modelfile"
    path.write_text(text, encoding="utf-8")
    return {"modelfile": path.name, "stops": stops, "default_system": shape.default_system,
            "roundtrip": {k: check[k] for k in ("matched", "total", "passed", "missing_stops", "end_of_turn")},
            **({} if check["passed"] else {"error": describe_failure(check)})}


def write_readme(folder: Path, modelfiles: list[str]) -> None:
    commands = "\n".join(f"    ollama create {Path(m).stem.lower()} -f {m}" for m in modelfiles)
    (Path(folder) / "README.ollama.md").write_text(README.format(commands=commands), encoding="utf-8")

"""An Ollama bundle for a GGUF: a Modelfile whose TEMPLATE (Go text/template, Ollama's syntax) is derived from
the tokenizer's Jinja chat template (ollama_template.py), whose PARAMETER stop is the checkpoint's ChatFormat
stop list, and a round-trip check that the Go template renders every sample conversation token for token like
the Jinja one. A Modelfile is written only when its round trip passes; otherwise the bundle fails, naming why.
"""

import dataclasses
import json
import re
from pathlib import Path

from workbench.chat.format import ChatFormat
from workbench.export.ollama.gotemplate import Struct
from workbench.export.ollama.template import (
    DATETIME,
    DerivedTemplate,
    TemplateNotExpressible,
    derive,
    json_values,
)
from workbench.toolcalls.calls import ToolCall

SAMPLE_CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."}, {"role": "user", "content": "Color of the sky?"}],
    [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about cats."}],
    [{"role": "system", "content": "You are terse.\nNever use lists."}, {"role": "user", "content": "Name a fruit."},
     {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another, with \"quotes\" and é ü 東京."}],
    [{"role": "user", "content": "Write {{ .Prompt }} literally."}, {"role": "assistant", "content": "{{ .Prompt }}"},
     {"role": "user", "content": "Again, in 日本語."}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "one"}, {"role": "assistant", "content": "1"},
     {"role": "user", "content": "two"}, {"role": "assistant", "content": "2"}, {"role": "user", "content": "  three  "}],
]

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather <now> & later in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "description": "The time now",
                                          "parameters": {"type": "object", "properties": {}}}}


def _call(name: str, arguments: dict, call_id: str) -> dict:
    return {"type": "function", "id": call_id, "function": {"name": name, "arguments": arguments}}


# Oslo's weather asked, called for (no text beside the call) and answered: the conversations below vary it
_OSLO_ASK = {"role": "user", "content": "Weather in Oslo?"}
_OSLO_CALL = {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Oslo"}, "oS10w3a7h")]}
_OSLO = {"role": "tool", "name": "get_weather", "tool_call_id": "oS10w3a7h", "content": "-3"}
_OSLO_TEXT = {"content": "Let me check Oslo's weather."}
_OSLO_THINKING = {"reasoning_content": "Oslo: ask get_weather."}

# (messages, tools): a request with tools, one call and its result, parallel calls and their results, a loop
TOOL_CONVERSATIONS = [
    ([{"role": "user", "content": "Weather in Paris?"}], [WEATHER, CLOCK]),
    ([{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris", "unit": "c"},
                                                                "call9Wx2a")]},
      {"role": "tool", "name": "get_weather", "tool_call_id": "call9Wx2a", "content": "{\"temp\": 21}"}], [WEATHER]),
    ([{"role": "user", "content": "Paris and Tōkyō?"},
      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Paris"}, "pAr1s0001"),
                                                          _call("get_weather", {"city": "Tōkyō", "unit": "f"},
                                                                "t0kY00002")]},
      {"role": "tool", "name": "get_weather", "tool_call_id": "pAr1s0001", "content": "21"},
      {"role": "tool", "name": "get_weather", "tool_call_id": "t0kY00002", "content": "70"},
      {"role": "assistant", "content": "21 °C in Paris, 70 °F in Tōkyō."}, {"role": "user", "content": "And the time?"}],
     [WEATHER, CLOCK]),
    # an agent's loop: a call straight after a tool result
    ([{"role": "user", "content": "Oslo, then Bergen?"}, _OSLO_CALL, _OSLO,
      {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", {"city": "Bergen"}, "bErg3n001")]},
      {"role": "tool", "name": "get_weather", "tool_call_id": "bErg3n001", "content": "2"}], [WEATHER]),
]
# an assistant's text beside its call: checked where the Go template writes it as the Jinja one does, or drops it
# as the Jinja one does
CALL_TEXT_CONVERSATION = ([_OSLO_ASK, _OSLO_CALL | _OSLO_TEXT, _OSLO], [WEATHER])
# a call's reasoning, in the turn in progress and in a finished one: checked where the Go template writes it as the
# Jinja one does (Qwen 3: the turn in progress only), or drops it as the Jinja one does
THINKING_CONVERSATIONS = [
    ([_OSLO_ASK, _OSLO_CALL | _OSLO_THINKING, _OSLO], [WEATHER]),
    ([_OSLO_ASK, _OSLO_CALL | _OSLO_THINKING, _OSLO, {"role": "assistant", "content": "-3 °C in Oslo."},
      {"role": "user", "content": "And in Bergen?"}], [WEATHER]),
]
# reasoning and text beside the same call
THINKING_AND_TEXT = ([_OSLO_ASK, _OSLO_CALL | _OSLO_THINKING | _OSLO_TEXT, _OSLO], [WEATHER])

__all__ = ["TemplateNotExpressible", "derive_template", "roundtrip_check", "write_bundle"]


def tool_tolerant(render_with, variables: dict | None = None):
    """`render(messages, generation, tools=None)` over `render_with(messages, generation, tools, variables)`
    (`variables`: template variables such as enable_thinking): a template that only renders with tools (Hermes
    and Command-R+ tool_use, firefunction-v2: they loop over `tools`, read llama.cpp's `functions` text) is given
    an empty tool list when the conversation has none."""
    variables = variables or {}

    def render(messages, generation, tools=None):
        try:
            return render_with(messages, generation, tools, variables)
        except Exception:  # jinja's TypeError/UndefinedError on the missing list; re-raised when tools were given
            if tools is not None:
                raise
        return render_with(messages, generation, [], {"functions": "", "datetime": DATETIME} | variables)

    return render


def jinja_render(tokenizer, messages: list[dict], generation: bool = True, tools: list[dict] | None = None,
                 variables: dict | None = None) -> str:
    render = tool_tolerant(lambda m, g, t, v: tokenizer.apply_chat_template(
        m, tools=t, tokenize=False, add_generation_prompt=g, **v), variables)
    return render(messages, generation, tools)


def tokenizer_renderer(tokenizer, runtime_bos: str = "", variables: dict | None = None):
    """The Jinja rendering as an Ollama template must produce it, `render(messages, generation, tools=None)`:
    without the leading BOS text when the runtime adds BOS itself (Ollama tokenizes prompts with the GGUF's
    add_bos_token; a template that wrote it too would feed the model two)."""
    def render(messages, generation, tools=None):
        text = jinja_render(tokenizer, messages, generation, tools, variables)
        return text[len(runtime_bos):] if runtime_bos and text.startswith(runtime_bos) else text

    return render


THINK_OFF = {"enable_thinking": False}  # how templates with reasoning take Ollama's think=false


def derive_template(tokenizer, runtime_bos: str = "", tools: bool = True) -> DerivedTemplate:
    """The Go template for the tokenizer's chat template, or TemplateNotExpressible naming the construct.
    `tools`: False for a template that leaves tools out (a chat-only bundle)."""
    if not isinstance(getattr(tokenizer, "chat_template", None), str):
        raise TemplateNotExpressible("the checkpoint has no chat template to translate")
    render = tokenizer_renderer(tokenizer, runtime_bos)
    return derive(render, render_off=tokenizer_renderer(tokenizer, runtime_bos, THINK_OFF),
                  render_tools=render if tools else None)


def check_conversations(derived: DerivedTemplate, conversations=None) -> list[list[dict]]:
    """The sample conversations the template is checked on: without system messages when it has no system role;
    contents stripped when it strips them (Ollama sends content as given: the difference is recorded)."""
    out = []
    for conv in conversations or SAMPLE_CONVERSATIONS:
        if not derived.system_role and any(m["role"] == "system" for m in conv):
            continue
        out.append([dict(m, content=m["content"].strip()) for m in conv] if derived.trims_content else conv)
    return out


def _tool(spec: dict) -> Struct:
    """An OpenAI function spec as Ollama's api.Tool (its String() prints the fields Ollama keeps, in its order)."""
    fn = spec.get("function", spec)
    params = fn.get("parameters") or {}
    wire_params = {"type": params.get("type", "")}
    wire_params |= {k: params[k] for k in ("$defs", "items", "required") if params.get(k)}
    wire_params["properties"] = params.get("properties")
    wire_fn = {"name": fn["name"]} | ({"description": fn["description"]} if fn.get("description") else {})
    wire_fn["parameters"] = wire_params
    function = Struct({"Name": fn["name"], "Description": fn.get("description", ""),
                       "Parameters": Struct({"Type": wire_params["type"], "Required": params.get("required") or [],
                                             "Properties": params.get("properties") or {}}, wire_params)}, wire_fn)
    return Struct({"Type": spec.get("type", "function"), "Function": function},
                  {"type": spec.get("type", "function"), "function": wire_fn})


def _tool_call(call: dict, index: int) -> dict:
    """An OpenAI tool call as Ollama's api.ToolCall: .Function.Name, .Function.Arguments (printed as JSON)."""
    parsed = ToolCall.from_openai(call)
    arguments = Struct(parsed.arguments, parsed.arguments)
    return Struct({"ID": call.get("id") or "", "Function": Struct(
        {"Index": index, "Name": parsed.name, "Arguments": arguments},
        {"index": index, "name": parsed.name, "arguments": parsed.arguments})}, None)


def ollama_values(messages: list[dict], tools: list[dict] | None = None, think: bool | None = None) -> dict:
    """The data Ollama's chat endpoint executes the template with (its template.go collate()): consecutive
    messages of one role merged with a blank line, all system messages also joined into .System; tool calls,
    tool results (.ToolName, .ToolCallID), reasoning (.Thinking), the request's tools and think flag in Ollama's
    shapes."""
    collated: list[dict] = []
    for m in messages:
        content = m.get("content") or ""
        if collated and collated[-1]["Role"] == m["role"] and m["role"] != "tool" and not m.get("tool_calls") \
                and not collated[-1].get("ToolCalls"):
            collated[-1]["Content"] += "\n\n" + content
            continue
        # every field of Ollama's api.Message, as Go has them (zero values when absent)
        collated.append(Struct({"Role": m["role"], "Content": content,
                                "Thinking": m.get("reasoning_content") or m.get("thinking") or "",
                                "ToolCalls": [_tool_call(c, i) for i, c in enumerate(m.get("tool_calls") or [])],
                                "ToolName": (m.get("name") or "") if m["role"] == "tool" else "",
                                "ToolCallID": (m.get("tool_call_id") or "") if m["role"] == "tool" else ""}, None))
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {"System": system, "Messages": collated, "Response": "", "Tools": [_tool(t) for t in tools or []],
            "Think": bool(think), "IsThinkSet": think is not None}


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


def compact_tool_json(text: str, tools: list[dict], messages: list[dict]) -> str:
    """`text` with every JSON value equal to one of the request's tools, their functions or a call's arguments
    re-serialized compactly (keys sorted): how Ollama's `json` and Jinja's tojson may differ and nothing else."""
    wanted = [x for t in tools for x in (t, t["function"])]
    wanted += [ToolCall.from_openai(c).arguments for m in messages for c in m.get("tool_calls") or []]
    out, pos = [], 0
    for start, end, value in json_values(text, wanted):
        out += [text[pos:start], json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)]
        pos = end
    return "".join(out) + text[pos:]


def roundtrip_check(modelfile: str, render, end_of_turn, conversations, *, tokenize=None, renderer=None,
                    llama_tokenize=None, runtime_bos: str = "", detokenize=None, render_off=None,
                    tool_conversations=()) -> dict:
    """Render each conversation with the Modelfile's Go template (Ollama's values) and with the Jinja template
    (`render(messages, add_generation_prompt)`); they must be the same text, and with `tokenize` (the HF
    tokenizer) the same tokens, `runtime_bos` (the BOS the runtime adds) before both. Every end-of-turn token must
    be in the stop list. `llama_tokenize` (the GGUF's vocabulary): where llama.cpp tokenizes the rendering
    otherwise than `tokenize`, the row says where (`tokenizer_difference`, pieces by `detokenize`). `render_off`
    (the Jinja rendering with enable_thinking=False): each conversation again, Ollama's think flag false.
    `tool_conversations` [(messages, tools)]: rendered with tools by `render(messages, generation, tools)`; both
    texts pass compact_tool_json first, and the rows record what Ollama's compact JSON changes (`tool_json`)."""
    from workbench.export.ollama import gotemplate

    go_render = renderer or gotemplate.render
    parsed = parse_modelfile(modelfile)
    results = []
    passes = [(messages, render, None) for messages in conversations]
    passes += [(messages, render_off, False) for messages in conversations] if render_off else []
    passes += [((messages, tools), render, None) for messages, tools in tool_conversations]
    for messages, jinja, think in passes:
        tools = None
        if isinstance(messages, tuple):
            messages, tools = messages
        generation = messages[-1]["role"] != "assistant"
        expected_text = jinja(messages, generation, tools) if tools else jinja(messages, generation)
        row = {"roles": [m["role"] for m in messages]} | ({"think": think} if think is not None else {})
        try:
            got_text = go_render(parsed["template"] or "", ollama_values(messages, tools=tools, think=think))
        except Exception as exc:  # noqa: BLE001 - an unparsable or failing template fails the check, with its reason
            results.append(row | {"match": False, "error": f"{type(exc).__name__}: {exc}"})
            continue
        if tools:
            raw = (expected_text, got_text)
            expected_text = compact_tool_json(expected_text, tools, messages)
            got_text = compact_tool_json(got_text, tools, messages)
            row["tool_json"] = {"jinja_chars": len(raw[0]), "ollama_chars": len(raw[1])}
            if tokenize is not None:
                row["tool_json"] |= {"jinja_tokens": len(tokenize(runtime_bos + raw[0])),
                                     "ollama_tokens": len(tokenize(runtime_bos + raw[1]))}
        row["match"] = got_text == expected_text
        if tokenize is not None:
            expected = tokenize(runtime_bos + expected_text)
            row["n_tokens"] = len(expected)
            row["match"] = row["match"] and tokenize(runtime_bos + got_text) == expected
            if llama_tokenize is not None:
                # llama.cpp splitting the same text otherwise than transformers is the GGUF vocabulary's doing
                # (every runtime of the file sees it), not the template's: recorded, it does not fail the check.
                llama = llama_tokenize(runtime_bos + got_text)
                row["llama_cpp_tokens_match"] = llama == expected
                if not row["llama_cpp_tokens_match"]:
                    row["tokenizer_difference"] = _first_token_difference(expected, llama, detokenize)
        if not row["match"]:
            at = next((i for i, (x, y) in enumerate(zip(got_text, expected_text)) if x != y),
                      min(len(got_text), len(expected_text)))
            row["first_difference"] = {"char": at, "go": got_text[at: at + 40], "jinja": expected_text[at: at + 40]}
        results.append(row)
    missing = [t for t in end_of_turn if t not in parsed["stops"]]
    return {"conversations": results, "matched": sum(r["match"] for r in results), "total": len(results),
            "stops": parsed["stops"], "end_of_turn": list(end_of_turn), "missing_stops": missing,
            "passed": bool(results) and all(r["match"] for r in results) and not missing}


def _first_token_difference(expected: list[int], got: list[int], detokenize=None) -> dict:
    at = next((i for i, (x, y) in enumerate(zip(expected, got)) if x != y), min(len(expected), len(got)))
    show = detokenize or (lambda ids: ids)
    return {"token": at, "transformers": show(expected[at: at + 4]), "llama_cpp": show(got[at: at + 4])}


def tokenizer_note(check: dict) -> str | None:
    """One line when llama.cpp tokenizes a rendering otherwise than transformers (the GGUF's vocabulary)."""
    diff = next((r["tokenizer_difference"] for r in check["conversations"] if "tokenizer_difference" in r), None)
    if diff is None:
        return None
    return (f"llama.cpp tokenizes this GGUF's vocabulary otherwise than transformers on the same text (token "
            f"{diff['token']}: transformers {diff['transformers']} vs llama.cpp {diff['llama_cpp']}): every runtime "
            "of the GGUF sees these tokens; the template renders the same text")


def describe_failure(check: dict) -> str:
    if check["missing_stops"]:
        return f"end-of-turn token(s) {', '.join(check['missing_stops'])} missing from PARAMETER stop"
    bad = next(r for r in check["conversations"] if not r["match"])
    diff = bad.get("first_difference")
    detail = bad.get("error") or (f"first difference at character {diff['char']}: Go {diff['go']!r} vs Jinja "
                                  f"{diff['jinja']!r}" if diff and diff["go"] != diff["jinja"] else "same text, other tokens")
    return f"Go template rendering differs from the Jinja chat template for roles {bad['roles']}: {detail}"


README = """# Running these GGUF files with Ollama

Each `NAME.Modelfile` here serves the GGUF file of the same name with the checkpoint's own chat template
(translated to Ollama's Go template syntax and checked token for token against the Jinja original) and a stop
list holding every end-of-turn and EOS token:

{commands}

then `ollama run NAME`. The Modelfiles refer to the GGUF files by relative path: keep them in this folder.
"""


def write_bundle(gguf_path: Path, tokenizer, source_dir: Path, chat_format: ChatFormat, *,
                 adapter: str | None = None, base_gguf: str | None = None, llama_tokenize=None,
                 adds_bos: bool = False) -> dict:
    """Write NAME.Modelfile beside gguf_path when its round trip passes; returns the record for the export.
    {"error": ...} and no Modelfile for a template Ollama's syntax cannot express or one whose check failed.
    adds_bos: the GGUF's add_bos_token (the runtime then writes BOS, the template must not)."""
    gguf_path = Path(gguf_path)
    bos = (tokenizer.bos_token or "") if adds_bos else ""
    try:
        derived = derive_template(tokenizer, bos)
        stops = list(chat_format.stop_tokens)
        text = modelfile_text(base_gguf or gguf_path.name, derived.text, stops, generation_defaults(source_dir),
                              adapter=adapter, source=str(source_dir))
    except TemplateNotExpressible as exc:
        return {"error": str(exc), "refused": True}
    def check_with(derived, text):
        return roundtrip_check(text, tokenizer_renderer(tokenizer, bos), chat_format.end_of_turn,
                               check_conversations(derived),
                               tokenize=lambda t: tokenizer(t, add_special_tokens=False)["input_ids"],
                               llama_tokenize=llama_tokenize, runtime_bos=bos,
                               detokenize=tokenizer.convert_ids_to_tokens,
                               render_off=tokenizer_renderer(tokenizer, bos, THINK_OFF) if derived.thinking_switch
                               else None, tool_conversations=tool_conversations(derived))

    check = check_with(derived, text)
    if derived.tools and any(not r["match"] for r in check["conversations"] if "tool_json" in r):
        # tools that do not round-trip leave a chat-only bundle, the difference named
        derived = dataclasses.replace(derive_template(tokenizer, bos, tools=False),
                                      tools_refused=f"the tool round trip fails: {describe_failure(check)}")
        text = modelfile_text(base_gguf or gguf_path.name, derived.text, stops, generation_defaults(source_dir),
                              adapter=adapter, source=str(source_dir))
        check = check_with(derived, text)
    record = {"stops": stops, "default_system": derived.default_system, "features": list(derived.features),
              "tools": tools_record(derived, check), "runtime_bos": bos or None,
              "roundtrip": {k: check[k] for k in ("matched", "total", "passed", "missing_stops", "end_of_turn")},
              "notes": _notes(derived) + [n for n in [tokenizer_note(check), tools_note(derived, check)] if n]}
    if not check["passed"]:
        return record | {"error": describe_failure(check)}
    path = gguf_path.parent / f"{gguf_path.stem}.Modelfile"
    path.write_text(text, encoding="utf-8")
    return record | {"modelfile": path.name}


def tool_conversations(derived: DerivedTemplate) -> list:
    """TOOL_CONVERSATIONS the template is checked on: none without tools; one call per message where the Jinja
    template refuses parallel calls; text and reasoning beside a call where the Go template writes them as the
    Jinja one does (or drops them as it does)."""
    if not derived.tools:
        return []
    return [(m, t) for m, t in TOOL_CONVERSATIONS
            if derived.parallel_calls or all(len(x.get("tool_calls") or []) < 2 for x in m)] + (
        [CALL_TEXT_CONVERSATION] if derived.call_text != "not written" else []) + (
        THINKING_CONVERSATIONS if derived.call_thinking != "not written" else []) + (
        [THINKING_AND_TEXT] if "not written" not in (derived.call_text, derived.call_thinking) else [])


def tools_record(derived: DerivedTemplate, check: dict) -> dict:
    """What the bundle does with tools; where it writes them, what Ollama's compact JSON changes on the checked
    conversations (characters and tokens, Jinja minus Ollama)."""
    record = {"template_renders_tools": derived.tools or derived.tools_refused is not None,
              "in_modelfile": derived.tools, "refused": derived.tools_refused, "call_prefix": derived.tool_call_prefix,
              "call_text": derived.call_text, "call_thinking": derived.call_thinking}
    rows = [r["tool_json"] for r in check["conversations"] if "tool_json" in r]
    if rows:
        record["compact_json"] = {"conversations": len(rows)} | {
            f"{unit}_saved": sum(r[f"jinja_{unit}"] - r[f"ollama_{unit}"] for r in rows)
            for unit in ("chars", "tokens") if f"jinja_{unit}" in rows[0]}
    return record


def tools_note(derived: DerivedTemplate, check: dict) -> str | None:
    if derived.tools_refused:
        return (f"tools: {derived.tools_refused}; this Modelfile renders conversations without tools (Ollama answers "
                "requests with tools with 'does not support tools')")
    if not derived.tools:
        return None
    saved = tools_record(derived, check).get("compact_json", {})
    return (f"tools: Ollama writes the tool list and each call's arguments as compact JSON where the Jinja template "
            f"may space or indent them (checked equal once both are compacted; {saved.get('chars_saved', 0)} "
            f"characters, {saved.get('tokens_saved', 'n/a')} tokens fewer over {saved.get('conversations', 0)} "
            f"conversations); Ollama finds the calls after {derived.tool_call_prefix!r}" + (
                "".join(f"; an assistant's {what} beside its tool calls is not written (the Jinja template writes "
                        "it where Ollama's template cannot)" for what, how in
                        (("text", derived.call_text), ("reasoning", derived.call_thinking)) if how == "not written")))


def _notes(derived: DerivedTemplate) -> list[str]:
    notes = list(derived.notes)
    if derived.trims_content:
        notes.append("the Jinja template strips whitespace around each message; Ollama sends content as given "
                     "(checked on stripped contents)")
    if not derived.system_role:
        notes.append("the Jinja template has no system role; the Go template drops system messages")
    return notes


def write_readme(folder: Path, modelfiles: list[str]) -> None:
    commands = "\n".join(f"    ollama create {Path(m).stem.lower()} -f {m}" for m in modelfiles)
    (Path(folder) / "README.ollama.md").write_text(README.format(commands=commands), encoding="utf-8")

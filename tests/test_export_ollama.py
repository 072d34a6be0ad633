"""The Ollama bundle: a Go template derived from the Jinja chat template, checked token for token, rendered by
the Python renderer and cross-checked against Go's own text/template."""

import pytest
from chat_templates import GEMMA3

from workbench.chat import format as chat_format
from workbench.export.ollama import bundle as ollama
from workbench.export.ollama import gotemplate

ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
WITH_START = ("{{ bos_token }}{% for message in messages %}{{ '[' + message['role'] + ']: ' + message['content'] + "
              "'\n\n' }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant]: ' }}{% endif %}")
# Mistral's shape: the system text opens the first user turn
SYSTEM_IN_FIRST_USER = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = "
                        "messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}{% for message in "
                        "msgs %}{% if message['role'] == 'user' %}{{ '[INST] ' + (sys + '\n' if loop.first and sys else '')"
                        " + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
                        "{% endfor %}")
# a `set` inside the loop is gone by the next message: this template drops the system message
SYSTEM_IGNORED = ("{% for message in messages %}{% if message['role'] == 'system' %}{% set sys = message['content'] %}"
                        "{% elif message['role'] == 'user' %}{{ '[INST] ' + (sys + '\n' if sys is defined and loop.index0 == 1"
                        " else '') + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}"
                        "{% endif %}{% endfor %}")
# Every third message in another frame: per-position logic no Ollama template here reproduces
PER_POSITION = ("{% for message in messages %}{% if loop.index0 % 3 == 2 %}{{ '#' + message['role'] + ': ' }}{% else %}"
                "{{ message['role'] + ': ' }}{% endif %}{{ message['content'] + '\n' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")


@pytest.fixture(scope="module")
def tokenizer(default_ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_ckpt.path))


def _with_template(tokenizer, template: str):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = template
    return tok


def _bundle(tokenizer, eos_ids=(2,)):
    derived = ollama.derive_template(tokenizer)
    fmt = chat_format.from_tokenizer(tokenizer, eos_ids)
    text = ollama.modelfile_text("m.gguf", derived.text, list(fmt.stop_tokens), {})
    return derived, text, fmt


def _check(text, tokenizer, derived, fmt, **kw):
    return ollama.roundtrip_check(text, ollama.tokenizer_renderer(tokenizer), fmt.end_of_turn,
                                  ollama.check_conversations(derived),
                                  tokenize=lambda t: tokenizer(t, add_special_tokens=False)["input_ids"], **kw)


def test_smollm2_modelfile_and_roundtrip(tokenizer):
    derived, text, fmt = _bundle(tokenizer)
    assert derived.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert fmt.end_of_turn == ("<|im_end|>",) and fmt.user_turn == ("<|im_start|>",)
    assert text.splitlines()[2] == "FROM ./m.gguf"
    assert ollama.parse_modelfile(text)["stops"] == ["<|im_end|>", "<|im_start|>"]
    check = _check(text, tokenizer, derived, fmt)
    print(f"\nround trip: {check['matched']}/{check['total']} conversations, stops {check['stops']}")
    assert check["passed"] and check["total"] == len(ollama.SAMPLE_CONVERSATIONS) and check["matched"] == check["total"]
    roles = [r["roles"] for r in check["conversations"]]
    assert ["user"] in roles and ["system", "user"] in roles and any(len(r) >= 6 for r in roles)


def test_check_fails_without_a_stop_token(tokenizer):
    derived, text, fmt = _bundle(tokenizer)
    broken = text.replace('PARAMETER stop "<|im_end|>"\n', "")
    check = _check(broken, tokenizer, derived, fmt)
    assert not check["passed"] and check["missing_stops"] == ["<|im_end|>"]
    assert ollama.describe_failure(check) == "end-of-turn token(s) <|im_end|> missing from PARAMETER stop"


@pytest.mark.parametrize("old,new", [
    ('(eq $kind "assistant") }}{{ "<|im_end|>\\n<|im_start|>assistant\\n" }}',
     '(eq $kind "assistant") }}{{ "<|im_end|><|im_start|>assistant\\n" }}'),
    ("trained by Hugging Face", "trained by someone"),  # the default system prompt
    ('{{- if ne $prev "assistant" }}{{ "<|im_end|>\\n<|im_start|>assistant\\n" }}',
     '{{- if ne $prev "assistant" }}{{ "<|im_end|>\\n<|im_start|>assistant" }}'),
    ('{{- $prev = $kind }}', ""),
])
def test_check_fails_when_the_template_is_altered(tokenizer, old, new):
    derived, text, fmt = _bundle(tokenizer)
    assert old in text
    check = _check(text.replace(old, new), tokenizer, derived, fmt)
    assert not check["passed"] and check["matched"] < check["total"]
    assert "Go template rendering differs from the Jinja chat template" in ollama.describe_failure(check)


def test_broken_go_syntax_fails_the_check(tokenizer):
    derived, text, fmt = _bundle(tokenizer)
    check = _check(text.replace("{{- end }}", "", 1), tokenizer, derived, fmt)
    assert not check["passed"] and "missing {{end}}" in check["conversations"][0]["error"]


@pytest.mark.parametrize("template", [ZEPHYR, WITH_START, SYSTEM_IN_FIRST_USER, SYSTEM_IGNORED, GEMMA3],
                         ids=["zephyr", "bos-start", "system-in-first-user", "system-ignored", "gemma3"])
def test_other_template_shapes_round_trip(tokenizer, template):
    tok = _with_template(tokenizer, template)
    derived, text, fmt = _bundle(tok)
    check = _check(text, tok, derived, fmt)
    assert check["passed"], check
    assert check["total"] == len(ollama.SAMPLE_CONVERSATIONS)
    assert derived.default_system is None and derived.trims_content == (template is GEMMA3)


def test_gemma3_system_opens_the_first_user_turn(tokenizer):
    tok = _with_template(tokenizer, GEMMA3)
    derived = ollama.derive_template(tok)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    rendered = gotemplate.render(derived.text, ollama.ollama_values(messages))
    assert rendered == "<|im_start|><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert rendered == ollama.jinja_render(tok, messages)


def test_per_position_logic_is_refused_naming_it(tokenizer):
    tok = _with_template(tokenizer, PER_POSITION)
    with pytest.raises(ollama.TemplateNotExpressible, match="per-position logic"):
        ollama.derive_template(tok)


def test_python_renderer_equals_go(tokenizer, go_render):
    templates = [ollama.derive_template(_with_template(tokenizer, t)).text
                 for t in (tokenizer.chat_template, ZEPHYR, WITH_START, SYSTEM_IN_FIRST_USER, GEMMA3)]
    templates += [  # constructs Ollama's own templates use
        "{{- if .System }}S:{{ .System }}\n{{ end }}{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}",
        ("{{ $n := len .Messages }}{{ range $i, $m := .Messages }}{{ if or (eq $m.Role \"x\") (lt $i 1) }}"
         "[{{ $i }}/{{ $n }}]{{ else if not (eq $m.Role \"user\") }}-{{ else }}+{{ end }}{{ end }}"),
        "A  {{- /* comment */ -}}  B {{ $first := index .Messages 0 }}{{ $first.Content }} {{ `raw \\n` }} {{ true }} {{ 3 }}",
        '{{ $p := "" }}{{ range .Messages }}{{ $p }}>{{ $p = .Role }}{{ end }}|{{ $p }}|{{ slice (currentDate) 0 4 }}',
    ]
    for template in templates:
        for messages in ollama.SAMPLE_CONVERSATIONS:
            values = ollama.ollama_values(messages)
            assert gotemplate.render(template, values) == go_render(template, values), (template, messages)


def test_roundtrip_with_real_go_and_its_failures(tokenizer, go_render):
    derived, text, fmt = _bundle(tokenizer)
    assert _check(text, tokenizer, derived, fmt, renderer=go_render)["passed"]
    altered = text.replace("trained by Hugging Face", "trained by someone")
    assert not _check(altered, tokenizer, derived, fmt, renderer=go_render)["passed"]


def test_ollama_values_collate_like_ollama():
    values = ollama.ollama_values([{"role": "system", "content": "a"}, {"role": "user", "content": "b"},
                                   {"role": "user", "content": "c"}])
    assert values["System"] == "a"
    assert [(m["Role"], m["Content"]) for m in values["Messages"]] == [("system", "a"), ("user", "b\n\nc")]
    assert values["Messages"][0] == {"Role": "system", "Content": "a", "Thinking": "", "ToolCalls": [], "ToolName": "",
                                     "ToolCallID": ""}


def test_unsupported_go_constructs_are_named():
    with pytest.raises(gotemplate.UnsupportedTemplate, match="with"):
        gotemplate.render("{{ with .System }}x{{ end }}", {"System": "s"})
    with pytest.raises(gotemplate.UnsupportedTemplate, match="undefined variable"):
        gotemplate.render("{{ $nope }}", {})


# renders like ChatML except when a message mentions Tokyo: the probes cannot see it, the round trip does
CONTENT_DEPENDENT = ("{% for m in messages %}{{ '<|im_start|>' + m.role + '\n' + m.content + ('!' if '東京' in m.content"
                     " else '') + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
                     "{{ '<|im_start|>assistant\n' }}{% endif %}")


def test_a_failed_round_trip_writes_no_modelfile(tokenizer, tmp_path):
    gguf = tmp_path / "m.gguf"
    tok = _with_template(tokenizer, tokenizer.chat_template)
    fmt = chat_format.from_tokenizer(tok)
    record = ollama.write_bundle(gguf, tok, tmp_path, fmt)
    assert record["roundtrip"]["passed"] and (tmp_path / "m.Modelfile").is_file()

    (tmp_path / "m.Modelfile").unlink()
    odd = _with_template(tokenizer, CONTENT_DEPENDENT)
    record = ollama.write_bundle(gguf, odd, tmp_path, chat_format.from_tokenizer(odd))
    assert not record["roundtrip"]["passed"] and "modelfile" not in record
    assert "differs from the Jinja chat template" in record["error"] and not (tmp_path / "m.Modelfile").exists()


def test_bos_the_runtime_adds_is_not_in_the_template(tokenizer, tmp_path):
    """Ollama tokenizes prompts with the GGUF's add_bos_token: the Modelfile leaves BOS to it, and the check
    compares BOS + Go rendering with the Jinja rendering that starts with BOS."""
    tok = _with_template(tokenizer, WITH_START)
    fmt = chat_format.from_tokenizer(tok)
    record = ollama.write_bundle(tmp_path / "m.gguf", tok, tmp_path, fmt, adds_bos=True)
    assert record["roundtrip"]["passed"] and record["runtime_bos"] == tok.bos_token
    template = ollama.parse_modelfile((tmp_path / "m.Modelfile").read_text())["template"]
    messages = [{"role": "user", "content": "Hi"}]
    rendered = gotemplate.render(template, ollama.ollama_values(messages))
    assert tok.bos_token + rendered == ollama.jinja_render(tok, messages) and not rendered.startswith(tok.bos_token)

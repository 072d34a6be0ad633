"""The Ollama bundle: a Go template derived from the Jinja chat template, checked token for token, rendered by
the Python renderer and cross-checked against Go's own text/template."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from workbench.export import gotemplate, ollama

REPO = Path(__file__).resolve().parent.parent
GO_RENDER = REPO / "exporters" / "ollama" / "render" / "main.go"

ZEPHYR = ("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
WITH_START = ("{{ bos_token }}{% for message in messages %}{{ '[' + message['role'] + ']: ' + message['content'] + "
              "'\n\n' }}{% endfor %}{% if add_generation_prompt %}{{ '[assistant]: ' }}{% endif %}")
SYSTEM_IN_FIRST_USER = ("{% for message in messages %}{% if message['role'] == 'system' %}{% set sys = message['content'] %}"
                        "{% elif message['role'] == 'user' %}{{ '[INST] ' + (sys + '\n' if sys is defined and loop.index0 == 1"
                        " else '') + message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}"
                        "{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def tokenizer(default_ckpt):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_ckpt.path))


def _with_template(tokenizer, template: str):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = template
    return tok


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    """Go's text/template (Ollama's engine): the stdlib-only program in exporters/ollama/render, built once."""
    go = shutil.which("go")
    if not go:
        pytest.skip("needs Go (Debian golang-go; scripts/test.sh installs it when run as root) to cross-check "
                    "the Python Go-template renderer against Go's text/template")
    out = tmp_path_factory.mktemp("gorender")
    env = {"HOME": str(out), "GOCACHE": str(out / "cache"), "GOPATH": str(out / "gopath"), "GOFLAGS": "-mod=mod",
           "GO111MODULE": "off", "PATH": "/usr/bin:/bin"}
    subprocess.run([go, "build", "-o", str(out / "render"), str(GO_RENDER)], check=True, env=env, capture_output=True)

    def render(template: str, values: dict) -> str:
        proc = subprocess.run([str(out / "render")], input=json.dumps({"template": template, "values": values}),
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(proc.stderr.strip())
        return proc.stdout

    return render


def _bundle(tokenizer, eos_ids=(2,)):
    shape = ollama.derive_shape(tokenizer)
    text = ollama.modelfile_text("m.gguf", ollama.go_template(shape), ollama.stop_tokens(tokenizer, shape, eos_ids), {})
    return shape, text, ollama.end_of_turn_tokens(tokenizer, shape, eos_ids)


def test_smollm2_modelfile_and_roundtrip(tokenizer):
    shape, text, eot = _bundle(tokenizer)
    assert shape.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert shape.prefix["user"] == "<|im_start|>user\n" and shape.suffix["assistant"] == "<|im_end|>\n"
    assert text.splitlines()[2] == "FROM ./m.gguf"
    parsed = ollama.parse_modelfile(text)
    assert parsed["stops"] == ["<|im_end|>", "<|im_start|>"] and eot == ["<|im_end|>"]
    check = ollama.roundtrip_check(text, tokenizer, eot)
    print(f"\nround trip: {check['matched']}/{check['total']} conversations, stops {check['stops']}")
    assert check["passed"] and check["total"] >= 5 and check["matched"] == check["total"]
    roles = [r["roles"] for r in check["conversations"]]
    assert ["user"] in roles and ["system", "user"] in roles and any(len(r) >= 4 for r in roles)


def test_check_fails_without_a_stop_token(tokenizer):
    _, text, eot = _bundle(tokenizer)
    broken = text.replace('PARAMETER stop "<|im_end|>"\n', "")
    check = ollama.roundtrip_check(broken, tokenizer, eot)
    assert not check["passed"] and check["missing_stops"] == ["<|im_end|>"]
    assert ollama.describe_failure(check) == "end-of-turn token(s) <|im_end|> missing from PARAMETER stop"


@pytest.mark.parametrize("old,new", [
    ('{{ "<|im_end|>\\n" }}\n{{- else if eq $m.Role "assistant"', '{{ "<|im_end|>" }}\n{{- else if eq $m.Role "assistant"'),
    ("trained by Hugging Face", "trained by someone"),  # the default system prompt
    ('(ne $m.Role "assistant") }}{{ "<|im_start|>assistant\\n" }}', '(ne $m.Role "assistant") }}{{ "<|im_start|>assistant" }}'),
    ("{{- if and (eq $i 0) (ne $m.Role", "{{- if and (eq $i 1) (ne $m.Role"),
])
def test_check_fails_when_the_template_is_altered(tokenizer, old, new):
    _, text, eot = _bundle(tokenizer)
    assert old in text
    check = ollama.roundtrip_check(text.replace(old, new), tokenizer, eot)
    assert not check["passed"] and check["matched"] < check["total"]
    assert "Go template rendering differs from the Jinja chat template" in ollama.describe_failure(check)


def test_broken_go_syntax_fails_the_check(tokenizer):
    _, text, eot = _bundle(tokenizer)
    check = ollama.roundtrip_check(text.replace("{{- end }}", "", 1), tokenizer, eot)
    assert not check["passed"] and "missing {{end}}" in check["conversations"][0]["error"]


@pytest.mark.parametrize("template", [ZEPHYR, WITH_START], ids=["zephyr", "bos-start"])
def test_other_template_shapes_round_trip(tokenizer, template):
    tok = _with_template(tokenizer, template)
    shape, text, eot = _bundle(tok)
    check = ollama.roundtrip_check(text, tok, eot)
    assert check["passed"], check
    assert shape.default_system is None and "<|im_end|>" in eot


def test_system_folded_into_user_turn_is_refused(tokenizer):
    tok = _with_template(tokenizer, SYSTEM_IN_FIRST_USER)
    with pytest.raises(ollama.TemplateNotExpressible, match="cannot express|does not render"):
        ollama.derive_shape(tok)


def test_python_renderer_equals_go(tokenizer, go_render):
    templates = [ollama.go_template(ollama.derive_shape(_with_template(tokenizer, t)))
                 for t in (tokenizer.chat_template, ZEPHYR, WITH_START)]
    templates += [  # constructs Ollama's own templates use
        "{{- if .System }}S:{{ .System }}\n{{ end }}{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}",
        ("{{ $n := len .Messages }}{{ range $i, $m := .Messages }}{{ if or (eq $m.Role \"x\") (lt $i 1) }}"
         "[{{ $i }}/{{ $n }}]{{ else if not (eq $m.Role \"user\") }}-{{ else }}+{{ end }}{{ end }}"),
        "A  {{- /* comment */ -}}  B {{ index .Messages 0 \"Content\" }} {{ `raw \\n` }} {{ true }} {{ 3 }}",
    ]
    for template in templates:
        for messages in ollama.SAMPLE_CONVERSATIONS:
            values = ollama.ollama_values(messages)
            assert gotemplate.render(template, values) == go_render(template, values), (template, messages)


def test_roundtrip_with_real_go_and_its_failures(tokenizer, go_render):
    _, text, eot = _bundle(tokenizer)
    assert ollama.roundtrip_check(text, tokenizer, eot, renderer=go_render)["passed"]
    altered = text.replace("trained by Hugging Face", "trained by someone")
    assert not ollama.roundtrip_check(altered, tokenizer, eot, renderer=go_render)["passed"]


def test_ollama_values_collate_like_ollama():
    values = ollama.ollama_values([{"role": "system", "content": "a"}, {"role": "user", "content": "b"},
                                   {"role": "user", "content": "c"}])
    assert values["System"] == "a"
    assert values["Messages"] == [{"Role": "system", "Content": "a"}, {"Role": "user", "Content": "b\n\nc"}]


def test_unsupported_go_constructs_are_named():
    with pytest.raises(gotemplate.UnsupportedTemplate, match="with"):
        gotemplate.render("{{ with .System }}x{{ end }}", {"System": "s"})
    with pytest.raises(gotemplate.UnsupportedTemplate, match="undefined variable"):
        gotemplate.render("{{ $nope }}", {})

"""The Ollama template derivation over the chat templates llama.cpp ships (vendor/llama.cpp/models/templates in the
llama-cpp-python sdist that scripts/setup.sh downloads; read from the archive, never copied here): every template
that renders a plain conversation gets a Go template whose rendering equals the Jinja one on the sample
conversations, or a refusal naming the construct; Go's own text/template agrees with the Python renderer."""

import pytest
from real_vocab import corpus_templates

from workbench.chat.template import ChatTemplateError, render_template
from workbench.export.ollama import bundle as ollama
from workbench.export.ollama import gotemplate
from workbench.export.ollama.template import TemplateNotExpressible, derive

TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}  # the corpus has no tokenizers; text equality is checked


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    return corpus_templates()


def _renderer(template: str, variables: dict | None = None):
    return ollama.tool_tolerant(lambda messages, generation, tools, v: render_template(
        template, messages, generation, special_tokens=TOKENS, tools=tools, template_kwargs=v), variables)


def _outcome(template: str) -> tuple[str, str, str | None]:
    """("no-render" | "refused" | "mismatch" | "pass", detail, Go template)."""
    render = _renderer(template)
    try:
        render(ollama.SAMPLE_CONVERSATIONS[0], True)
    except ChatTemplateError as exc:
        return "no-render", str(exc), None
    try:
        derived = derive(render, render_off=_renderer(template, ollama.THINK_OFF))
    except TemplateNotExpressible as exc:
        return "refused", str(exc), None
    check = ollama.roundtrip_check(f'TEMPLATE """{derived.text}"""', render, [], ollama.check_conversations(derived),
                                   render_off=_renderer(template, ollama.THINK_OFF) if derived.thinking_switch else None)
    return ("pass", "", derived.text) if check["passed"] else ("mismatch", ollama.describe_failure(check), derived.text)


@pytest.fixture(scope="module")
def outcomes(corpus):
    return {name: _outcome(text) for name, text in sorted(corpus.items())}


def test_corpus_templates_round_trip_or_are_refused_by_name(corpus, outcomes):
    counts = {k: sum(o[0] == k for o in outcomes.values()) for k in ("pass", "refused", "mismatch", "no-render")}
    rendering = len(corpus) - counts["no-render"]
    print(f"\n{len(corpus)} templates, {rendering} render: {counts}; think=false switched in "
          f"{sum('IsThinkSet' in (o[2] or '') for o in outcomes.values())}")
    for name, (kind, detail, _) in outcomes.items():
        if kind != "pass":
            print(f"  {kind:9} {name}: {detail[:160]}")
    assert len(corpus) >= 70
    assert counts["mismatch"] == 0, {n: o[1] for n, o in outcomes.items() if o[0] == "mismatch"}
    assert counts["pass"] >= 60
    assert all(o[1] for o in outcomes.values() if o[0] == "refused")  # each refusal names its construct


@pytest.mark.parametrize("family,expect", [
    ("google-gemma-2-2b-it", "<start_of_turn>model"),
    ("mistralai-Mistral-Nemo-Instruct-2407", "[INST]"),
    ("microsoft-Phi-3.5-mini-instruct", "<|end|>"),
    ("openai-gpt-oss-120b", "<|channel|>final<|message|>"),
    ("Qwen-Qwen3-0.6B", "<|im_start|>assistant"),
    ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "<think>"),
    ("meta-llama-Llama-3.2-3B-Instruct", "currentDate"),
])
def test_named_families_pass(outcomes, family, expect):
    kind, detail, text = outcomes[family]
    assert kind == "pass", detail
    assert expect in text


def test_go_renders_every_derived_template_like_python(outcomes, go_render):
    checked = 0
    for name, (kind, _, text) in outcomes.items():
        if kind != "pass":
            continue
        for messages in ollama.SAMPLE_CONVERSATIONS:
            for think in (None, False) if "IsThinkSet" in text else (None,):
                values = ollama.ollama_values(messages, think=think)
                assert gotemplate.render(text, values) == go_render(text, values), name
                checked += 1
    assert checked >= 60 * len(ollama.SAMPLE_CONVERSATIONS)


def test_think_false_reaches_the_generation_prompt(corpus):
    """A template whose enable_thinking changes only the generation prompt (Qwen 3): Ollama's think=false gets the
    prompt enable_thinking=False gives; one where it changes more (SmolLM3's system block) is not switched, noted."""
    render, off = _renderer(corpus["Qwen-Qwen3-0.6B"]), _renderer(corpus["Qwen-Qwen3-0.6B"], ollama.THINK_OFF)
    derived = derive(render, render_off=off)
    assert derived.thinking_switch and "IsThinkSet" in derived.text
    messages = ollama.SAMPLE_CONVERSATIONS[2]
    assert gotemplate.render(derived.text, ollama.ollama_values(messages, think=False)) == off(messages, True)
    assert gotemplate.render(derived.text, ollama.ollama_values(messages, think=True)) == render(messages, True)
    assert off(messages, True).endswith("<think>\n\n</think>\n\n") and off(messages, True) != render(messages, True)
    smol = derive(_renderer(corpus["HuggingFaceTB-SmolLM3-3B"]),
                  render_off=_renderer(corpus["HuggingFaceTB-SmolLM3-3B"], ollama.THINK_OFF))
    assert not smol.thinking_switch and "changes more than the generation prompt" in smol.notes[0]

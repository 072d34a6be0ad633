"""Rendering a Jinja chat template the way transformers' apply_chat_template does (and llama-cpp-python's
Jinja2ChatFormatter, which copies it): a sandboxed environment with trim_blocks and lstrip_blocks, the
loopcontrols extension, `{% generation %}` blocks passed through, tojson without ASCII escaping, and the
raise_exception / strftime_now globals. Used for templates read without a tokenizer: a GGUF's metadata, and
the template corpus in the tests.
"""

import json
from datetime import datetime
from functools import lru_cache

from workbench.system.extras import require


class ChatTemplateError(ValueError):
    """The template raised (raise_exception) or failed to render the conversation."""


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=64)
def _compile(template: str):
    jinja2 = require("jinja2", "Rendering a chat template", "eval")
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            parser.stream.skip(1)
            return parser.parse_statements(("name:endgeneration",), drop_needle=True)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols],
                                        loader=jinja2.BaseLoader())
    env.filters["tojson"] = _tojson
    return env.from_string(template)


def thinking_variables(thinking: str | None) -> dict:
    """The template variables of a task's `thinking: on|off` (GenerationSpec): `enable_thinking`, as Qwen 3's and
    other reasoning templates read it; {} when unset (the template's default)."""
    return {} if thinking is None else {"enable_thinking": thinking == "on"}


def _raise(message):
    raise ChatTemplateError(message)


def render_template(template: str, messages: list[dict], add_generation_prompt: bool, *,
                    special_tokens: dict | None = None, now=None, tools: list[dict] | None = None,
                    template_kwargs: dict | None = None) -> str:
    """The template's text for `messages`; `special_tokens` are bos_token, eos_token, ... as the tokenizer
    passes them. `now` pins strftime_now (a datetime) for reproducible renderings. `tools` are OpenAI function
    specs (apply_chat_template's tools=); `template_kwargs` other variables templates read (enable_thinking)."""
    try:
        compiled = _compile(template)
    except Exception as exc:  # noqa: BLE001 - jinja2.TemplateSyntaxError and friends
        raise ChatTemplateError(f"the chat template does not parse ({exc})") from None
    clock = (lambda: now) if now is not None else datetime.now
    try:
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               raise_exception=_raise, strftime_now=lambda fmt: clock().strftime(fmt),
                               tools=tools, documents=None, **(template_kwargs or {}), **(special_tokens or {}))
    except ChatTemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - TypeError, UndefinedError, ... inside the template
        raise ChatTemplateError(f"{type(exc).__name__}: {exc}") from None

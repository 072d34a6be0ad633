"""Chat templates chosen by name or file: what `chat_template:` in a training recipe and `wb eval --chat-template`
take. A base model's tokenizer has no chat template; the one chosen for training is saved with the adapter's
tokenizer (chat_template.jinja), so evaluation, merge and export render with it.

The named templates ship in workbench/chat/templates/NAME.jinja, each written to render exactly what the family's
official template renders (tests/test_named_templates.py compares them with the real ones in llama.cpp's corpus):

| name | renders as | tools / thinking |
|---|---|---|
| chatml | `<|im_start|>role\\n...<|im_end|>`, no default system message | - |
| llama3 | Llama 3.1 / 3.2 / 3.3 Instruct (header ids, `<|eot_id|>`, Meta's date lines) | tools, one call a turn |
| gemma | Gemma 2 / 3 (`<start_of_turn>user|model`; the system text opens the first user turn) | - |
| mistral | Mistral Nemo's v3 tekken (`[INST]...[/INST]`, no spaces) | tools, 9-character call ids |
| phi3 | Phi-3 / Phi-3.5 Instruct (`<|user|>`, `<|end|>`) | - |
| qwen3 | Qwen 3 (ChatML, `<tools>`, `<tool_call>`, `<tool_response>`, `<think>`) | tools, thinking |
"""

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from workbench.chat.template import ChatTemplateError, render_template
from workbench.errors import BadInput

NAMES = ("chatml", "gemma", "llama3", "mistral", "phi3", "qwen3")
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}  # for the parse check only: no tokenizer is loaded there


@dataclass(frozen=True)
class ChosenTemplate:
    """A chat template picked by the user: its text, and where it came from (a name, or the file's path)."""

    text: str
    source: str

    @property
    def sha256(self) -> str:
        return template_sha256(self.text)

    def record(self) -> dict:
        """What lineage and manifests keep of it."""
        return {"source": self.source, "sha256": self.sha256}


def template_sha256(text: str | None) -> str | None:
    """A template's sha256, as runs and lineage record it (ChatFormat.sha256 hashes the same way)."""
    return hashlib.sha256(text.encode()).hexdigest() if text else None


def named_template(name: str) -> str:
    """The text of a shipped template (`name` one of NAMES)."""
    return resources.files("workbench.chat").joinpath("templates", f"{name}.jinja").read_text(encoding="utf-8")


def choose_template(value: str, *, relative_to: Path | None = None, where: str = "chat_template") -> ChosenTemplate:
    """`value` as a recipe or `--chat-template` gives it: a name of NAMES, or a .jinja file (relative to
    `relative_to`, the recipe's folder). BadInput naming `where` for an unknown name, a missing file or a template
    that does not render a plain conversation."""
    if value in NAMES:
        return ChosenTemplate(named_template(value), value)
    path = Path(value).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    looks_like_file = path.suffix in (".jinja", ".j2", ".txt") or "/" in value or path.exists()
    if not looks_like_file:
        raise BadInput(f"{where}: '{value}' is not a named template ({', '.join(NAMES)}) or a .jinja file")
    if not path.is_file():
        raise BadInput(f"{where}: '{value}': no such file ({path}); or name a template: {', '.join(NAMES)}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{where}: '{path}' cannot be read as a UTF-8 Jinja template ({exc})") from None
    chosen = ChosenTemplate(text, str(path.resolve()))
    try:
        render_template(text, [{"role": "user", "content": "hello"}], True, special_tokens=TOKENS)
    except ChatTemplateError as exc:
        raise BadInput(f"{where}: '{path}' does not render a one-message conversation: {exc}") from None
    return chosen

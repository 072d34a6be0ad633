"""ChatFormat: what a checkpoint's chat template, special tokens, generation_config and (for a GGUF) file
metadata say about turns, derived once and asked by every generation path (task evals under transformers and
llama.cpp, export verification and smoke chats, the Ollama stop list):

- the generation prompt;
- the tokens that end an assistant turn: the special tokens the template writes after an assistant message
  (<|im_end|>, <|eot_id|>, <end_of_turn>, <|end|>, </s>, <|return|>, ...), the ends of a turn that called a
  tool where the template writes them (<|eom_id|>, <|call|>), and every EOS id;
- the special tokens that open a user turn, where a model that starts inventing the user's next turn is cut;
- whether the template accepts a system message (Gemma 2 raises on one: the system text is then folded into
  the first user message, as its users do);
- the text markers around a reasoning model's thinking (Qwen 3 / DeepSeek R1 `<think>` ... `</think>`), and
  whether the generation prompt already opens it, so that the final answer can be told from the thinking;
- the syntax the template writes tool calls in (workbench.toolcalls.parse).

A base model's generation_config often names only <eos>, while an instruct template ends turns with its own
token: generation stops only where the template says a turn ends.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from workbench.toolcalls.parse import syntax_of_template

_U, _A, _U2, _T = "WBQUSERQ", "WBQASSISTANTQ", "WBQUSERTWOQ", "WBQTHINKINGQ"
# Tokens that end an assistant turn which called a tool, where the model stops to let the tool run (Llama 3.1's end
# of message, gpt-oss's end of a call): turn ends wherever the template writes them.
TOOL_TURN_ENDS = ("<|eom_id|>", "<|call|>")


@dataclass(frozen=True)
class ChatFormat:
    template: str | None
    generation_prompt: str = ""
    end_of_turn: tuple[str, ...] = ()
    user_turn: tuple[str, ...] = ()
    system_role: bool = True
    reasoning_start: str = ""  # the text that opens the thinking ("<think>"); "" for a model that does not reason
    reasoning_end: str = ""  # the text that closes it ("</think>"), after which the final answer comes
    reasoning_opened: bool = False  # the generation prompt itself opens the thinking (DeepSeek R1, QwQ)
    tool_syntax: str = ""  # how the template writes tool calls (workbench.toolcalls.parse.SYNTAXES; "" none known)

    def strip_reasoning(self, text: str) -> tuple[str, int]:
        """The final answer in a generated turn, and how many characters of thinking were stripped before it.

        As lm-eval's think_end_token: what follows the last end marker, leading whitespace dropped. A turn whose
        thinking never closes (opened by the prompt, or by the model, and cut by the token limit) has no answer:
        ("", its length), so no rule checks the thinking. Without markers the text is the answer.
        """
        if not self.reasoning_end:
            return text, 0
        if self.reasoning_end in text:
            answer = text.rsplit(self.reasoning_end, 1)[1].lstrip()
            return answer, len(text) - len(answer)
        if self.reasoning_opened or (self.reasoning_start and text.lstrip().startswith(self.reasoning_start)):
            return "", len(text)
        return text, 0

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """Every token generation stops at: the end of the assistant's turn, and the start of a user turn."""
        return tuple(dict.fromkeys(self.end_of_turn + self.user_turn))

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.template.encode()).hexdigest() if self.template else None

    def messages(self, conversation: list[dict]) -> list[dict]:
        """The conversation as this template accepts it: without a system role, the system text opens the first
        user message."""
        if self.system_role or not any(m["role"] == "system" for m in conversation):
            return conversation
        system = "\n\n".join(m["content"] for m in conversation if m["role"] == "system")
        rest = [dict(m) for m in conversation if m["role"] != "system"]
        first_user = next((m for m in rest if m["role"] == "user"), None)
        if first_user is not None:
            first_user["content"] = f"{system}\n\n{first_user['content']}"
        return rest

    def as_dict(self) -> dict:
        return {"template_sha256": self.sha256, "generation_prompt": self.generation_prompt,
                "end_of_turn": list(self.end_of_turn), "user_turn": list(self.user_turn), "system_role": self.system_role,
                "reasoning": self.reasoning_markers(), "tool_syntax": self.tool_syntax}

    def reasoning_markers(self) -> dict | None:
        """The thinking markers (None for a model that does not reason), as runs record them."""
        if not self.reasoning_end:
            return None
        return {"start": self.reasoning_start, "end": self.reasoning_end, "opened_by_prompt": self.reasoning_opened}


def specials_in(text: str, specials) -> list[str]:
    """The special tokens written in `text`, in order of first appearance (longest match at each position)."""
    by_length = sorted((s for s in specials if s), key=len, reverse=True)
    found, i = [], 0
    while i < len(text):
        hit = next((s for s in by_length if text.startswith(s, i)), None)
        if hit:
            found.append(hit)
            i += len(hit)
        else:
            i += 1
    return list(dict.fromkeys(found))


def derive(template: str | None, render, specials, eos_tokens=()) -> ChatFormat:
    """The ChatFormat of the template behind `render(messages, add_generation_prompt) -> str`; `specials` are
    the vocabulary's special-token strings, `eos_tokens` the EOS tokens (tokenizer, generation_config, GGUF)."""
    eos = tuple(dict.fromkeys(t for t in eos_tokens if t))
    if not template:
        return ChatFormat(None, end_of_turn=eos)
    user, assistant = {"role": "user", "content": _U}, {"role": "assistant", "content": _A}
    try:
        render([{"role": "system", "content": "WBQSYSTEMQ"}, user], True)
        system_role = True
    except Exception:  # noqa: BLE001 - raise_exception('System role not supported') and the like
        system_role = False
    try:
        bare, prompted = render([user], False), render([user], True)
        ended = render([user, assistant], False)
        turns = render([user, assistant, {"role": "user", "content": _U2}], True)
    except Exception:  # noqa: BLE001 - a template that cannot render a plain conversation: eos is all we know
        return ChatFormat(template, end_of_turn=eos, system_role=system_role, tool_syntax=syntax_of_template(template))
    generation = prompted[len(bare):] if prompted.startswith(bare) else ""
    after_assistant = ended.split(_A, 1)[1] if _A in ended else ""
    between = turns.split(_A, 1)[1].split(_U2, 1)[0] if _A in turns and _U2 in turns else ""
    inside = set(_within_turn(render, user, specials))
    end = [t for t in specials_in(after_assistant, specials) if t not in inside]
    if not end:  # a template that writes nothing after the last assistant message: its first token after one
        end = specials_in(between, specials)[:1]
    end += [t for t in TOOL_TURN_ENDS if t in template and t in specials]
    opening = [t for t in specials_in(between, specials) if t not in end and t not in inside]
    start, stop, opened = _reasoning_markers(template, render, user, prompted, specials)
    return ChatFormat(template, generation, tuple(dict.fromkeys([*end, *eos])), tuple(opening), system_role,
                      start, stop, opened, syntax_of_template(template))


def _reasoning_markers(template: str, render, user: dict, prompted: str, specials) -> tuple[str, str, bool]:
    """(start, end, opened by the generation prompt) of the text around a reasoning model's thinking.

    Read from an assistant message with a reasoning field, as Qwen 3 renders it (`<think>\\n...\\n</think>\\n\\n`
    before the answer); else, for a template that drops past thinking (DeepSeek R1), from a generation prompt
    that ends in an opening tag whose closing tag the template names. Markers made of special tokens (gpt-oss's
    channels) are not text a decoded answer keeps, so they are not reasoning markers here.
    """
    reasoning = {"role": "assistant", "content": _A, "thinking": _T, "reasoning_content": _T}
    try:
        text = render([user, reasoning], False)
    except Exception:  # noqa: BLE001 - a template that rejects the extra fields
        text = ""
    start = end = ""
    if _T in text and _A in text and text.index(_T) < text.index(_A):
        end = text[text.index(_T) + len(_T): text.index(_A)].strip()
        before = text[: text.index(_T)]
        start = before[len(prompted):].strip() if before.startswith(prompted) else ""
        if not start:  # the opening tag sits in the generation prompt
            tag = re.search(r"<(\w+)>\s*$", before)
            start = tag.group(0).strip() if tag else ""
    else:
        tag = re.search(r"<(\w+)>\s*$", prompted)
        if tag and f"</{tag.group(1)}>" in template:
            start, end = tag.group(0).strip(), f"</{tag.group(1)}>"
    if not end or " " in end or specials_in(end, specials) or specials_in(start, specials):
        return "", "", False
    return start, end, bool(start) and prompted.rstrip().endswith(start)


def _within_turn(render, user: dict, specials) -> list[str]:
    """Special tokens a model writes inside its own turn: between its reasoning and its answer (gpt-oss's
    <|end|><|start|>assistant<|channel|>final<|message|> between channels), read from an assistant message with
    a reasoning field (gpt-oss `thinking`, Qwen 3 / DeepSeek `reasoning_content`)."""
    reasoning = {"role": "assistant", "content": _A, "thinking": _T, "reasoning_content": _T}
    try:
        text = render([user, reasoning], False)
    except Exception:  # noqa: BLE001 - a template that rejects the extra fields has no reasoning turn
        return []
    if _T not in text or _A not in text or text.index(_T) > text.index(_A):
        return []
    return specials_in(text[text.index(_T) + len(_T): text.index(_A)], specials)


def tokenizer_specials(tokenizer) -> set[str]:
    specials = set(tokenizer.all_special_tokens)
    specials |= {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    return specials


def generation_eos_ids(model_dir) -> list[int]:
    """The eos_token_id(s) of a checkpoint's generation_config.json ([] when it has none)."""
    try:
        eos = json.loads((Path(model_dir) / "generation_config.json").read_text()).get("eos_token_id")
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def from_tokenizer(tokenizer, eos_ids=()) -> ChatFormat:
    """A transformers tokenizer's format; `eos_ids` adds generation_config's (or a GGUF's) EOS ids."""
    template = tokenizer.chat_template if isinstance(getattr(tokenizer, "chat_template", None), str) else None

    def render(messages, generation):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    ids = [i for i in [tokenizer.eos_token_id, *eos_ids] if i is not None]
    eos = [tokenizer.convert_ids_to_tokens(int(i)) for i in ids]
    return derive(template, render, tokenizer_specials(tokenizer), eos)


def hf_token_ids(tokenizer, tokens) -> list[int]:
    """The vocabulary ids of token strings (those the vocabulary has)."""
    ids = []
    for token in tokens:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is not None and tokenizer.convert_ids_to_tokens(int(i)) == token:  # not the unknown token
            ids.append(int(i))
    return list(dict.fromkeys(ids))

"""What the judge is asked, and the JSON it must answer with."""

import json

RUBRIC_SYSTEM = ("You are a careful, strict grader. Grade the answer against the rubric{ref}. "
                 "Reply with only a JSON object: {{\"rationale\": \"<one or two sentences>\", "
                 "\"score\": <an integer from {lo} to {hi}>}}.")
PAIRWISE_SYSTEM = ("You are a careful, impartial judge. Compare two answers to the same question{ref}. "
                   "Do not let the order of the answers or their length influence you. Reply with only a JSON "
                   "object: {{\"rationale\": \"<one or two sentences>\", \"winner\": \"A\", \"B\" or \"tie\"}}.")


def rubric_schema(scale: tuple[int, int]) -> dict:
    lo, hi = scale
    return {"type": "object", "additionalProperties": False, "required": ["rationale", "score"],
            "properties": {"rationale": {"type": "string"},
                           "score": {"type": "integer", "enum": list(range(lo, hi + 1))}}}


PAIRWISE_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["rationale", "winner"],
                   "properties": {"rationale": {"type": "string"},
                                  "winner": {"type": "string", "enum": ["A", "B", "tie"]}}}


def _question(messages: list[dict]) -> str:
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"[{m['role']}] {m['content']}" for m in messages)


def _reference(reference) -> str | None:
    if reference is None or reference == "":
        return None
    if isinstance(reference, list) and all(isinstance(r, str) for r in reference):
        return "\n".join(f"- {r}" for r in reference)
    return reference if isinstance(reference, str) else json.dumps(reference, ensure_ascii=False)


def rubric_messages(rubric: str, scale: tuple[int, int], messages: list[dict], answer: str, reference=None) -> list[dict]:
    ref = _reference(reference)
    system = RUBRIC_SYSTEM.format(ref=" and the reference answer" if ref else "", lo=scale[0], hi=scale[1])
    parts = [f"Rubric:\n{rubric.strip()}", f"Question:\n{_question(messages)}"]
    if ref:
        parts.append(f"Reference answer:\n{ref}")
    parts.append(f"Answer to grade:\n{answer}")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def pairwise_messages(criteria: str | None, messages: list[dict], answer_a: str, answer_b: str,
                      reference=None) -> list[dict]:
    ref = _reference(reference)
    system = PAIRWISE_SYSTEM.format(ref=", using the reference answer as the standard" if ref else "")
    parts = [f"Criteria:\n{criteria.strip()}"] if criteria else []
    parts.append(f"Question:\n{_question(messages)}")
    if ref:
        parts.append(f"Reference answer:\n{ref}")
    parts += [f"Answer A:\n{answer_a}", f"Answer B:\n{answer_b}"]
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]

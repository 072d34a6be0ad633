"""wb's tool_call verdict equals the Berkeley Function Calling Leaderboard's own checker's (bfcl-eval's
ast_checker, and its relevance rule for irrelevance), on every item of BFCL's non-live AST categories.

Each item's possible answer (every parameter's first allowed value) is rendered as model text (Hermes
`<tool_call>` blocks and a plain JSON list), and systematically varied: its last allowed values, optional
parameters left out, strings in other case and punctuation, an int for a whole float, a bool for a number, a list
item of another type, a dict key left out, wrong function, missing required argument, wrong type, value not
allowed, extra call, parallel calls reordered, no call; for irrelevance, a call where none fits and no call. wb reads the text (its parser)
and judges the calls (workbench.toolcalls.bfcl); the checker judges the calls that were rendered.

bfcl-eval's ast_checker imports its model registry (constants/model_config: every provider's SDK) only to look up
whether a model's function names had `.` replaced by `_`; that registry is given here as one entry, a model whose
names are kept as they are (wb keeps them), so bfcl-eval installs without its providers' SDKs.
"""

import copy
import json
import sys
import types
from importlib import resources

import pytest

from workbench.toolcalls.bfcl import check_calls
from workbench.toolcalls.calls import ToolCall
from workbench.toolcalls.parse import parse_calls

CATEGORIES = ("simple_python", "simple_java", "simple_javascript", "multiple", "parallel", "parallel_multiple",
              "irrelevance")
LANGUAGE = {"simple_java": "java", "simple_javascript": "javascript"}


@pytest.fixture(scope="module")
def bfcl():
    pytest.importorskip("bfcl_eval", reason="bfcl-eval (scripts/setup.sh installs it)")
    registry = types.ModuleType("bfcl_eval.constants.model_config")
    registry.MODEL_CONFIG_MAPPING = {"wb": types.SimpleNamespace(underscore_to_dot=False)}
    sys.modules.setdefault("bfcl_eval.constants.model_config", registry)
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.utils import is_empty_output

    return types.SimpleNamespace(ast_checker=ast_checker, is_empty_output=is_empty_output,
                                 languages={"python": Language.PYTHON, "java": Language.JAVA,
                                            "javascript": Language.JAVASCRIPT})


def bfcl_items(category: str) -> list[tuple[dict, list]]:
    data = resources.files("bfcl_eval") / "data"
    questions = [json.loads(line) for line in (data / f"BFCL_v4_{category}.json").read_text().splitlines() if line]
    if category == "irrelevance":
        return [(q, []) for q in questions]
    answers = {a["id"]: a["ground_truth"] for a in map(json.loads, (data / "possible_answer" /
                                                                      f"BFCL_v4_{category}.json").read_text()
                                                       .splitlines()) if a}
    return [(q, answers[q["id"]]) for q in questions]


def java_literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else source_text(value, "java", None)


def source_text(value, language: str, declared: str | None):
    """An argument as Java/JavaScript source text, as BFCL's converters read it for the declared type (BFCL gives
    those languages' arguments as text); JSON text for JavaScript's collections."""
    if language == "python" or isinstance(value, str):
        return value
    if language == "java" and declared == "ArrayList" and isinstance(value, list):
        return f"new ArrayList<>(Arrays.asList({', '.join(map(java_literal, value))}))"
    if language == "java" and declared == "Array" and isinstance(value, list):
        return f"new Object[]{{{', '.join(map(java_literal, value))}}}"
    if language == "java" and declared == "HashMap" and isinstance(value, dict):
        puts = " ".join(f"put({json.dumps(k)}, {java_literal(v)});" for k, v in value.items())
        return f"new HashMap<String, Object>() {{{{ {puts} }}}}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if declared == "long" and isinstance(value, int):
        return f"{value}L"
    if declared == "float" and language == "java" and isinstance(value, (int, float)):
        return f"{value}f"
    return json.dumps(value)


def rendered(answer: list[dict], language: str, functions: list[dict], pick: int = 0) -> list[ToolCall]:
    """The calls of a possible answer: each parameter's first (`pick`) allowed value, left out when that is ""."""
    calls = []
    for expected in answer:
        name, params = next(iter(expected.items()))
        props = next(f for f in functions if f["name"] == name)["parameters"].get("properties", {})
        calls.append(ToolCall(name, {k: source_text(chosen(v[pick], pick), language, props.get(k, {}).get("type"))
                                     for k, v in params.items() if v[pick] != ""}))
    return calls


def chosen(value, pick: int):
    """An allowed value as a model writes it: a dict's allowed values (BFCL gives each key a list) picked too."""
    if isinstance(value, dict):
        return {k: v[pick] for k, v in value.items() if isinstance(v, list) and v and v[pick] != ""}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [chosen(v, pick) for v in value]
    return value


def restyled(value):
    """A string as BFCL's normalization forgives: other case, spaces and punctuation."""
    return f" {value.upper().replace(' ', '_')}." if isinstance(value, str) and value else value


def whole(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def as_bool(value):
    return True if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def list_item(value):
    return [1, *value[1:]] if isinstance(value, list) and value and isinstance(value[0], str) else value


def dict_key_dropped(value):
    return dict(list(value.items())[1:]) if isinstance(value, dict) and value else value


def other_type(value, language):
    if language != "python":
        return 7 if isinstance(value, str) else "x"  # BFCL: Java/JavaScript arguments must be text
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return "abc"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return "x"
    return 1


def not_allowed(value, language):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 7919
    if isinstance(value, str):
        return value + " zzz" if language == "python" else value + "Zq"
    if isinstance(value, list):
        return value + value[:1] if value else ["zzz"]
    if isinstance(value, dict):
        return {**value, "zzz_key": 1}
    return value


def filler(spec: dict):
    kind = spec.get("type")
    return {"integer": 3, "float": 2.5, "number": 2.5, "boolean": True, "array": ["a"], "tuple": ["a"],
            "dict": {"a": 1}}.get(kind, "something")


def perturbations(question: dict, answer: list, language: str):
    """(name, calls) of the rendered answer and its perturbations."""
    functions = question["function"]
    if not answer:  # irrelevance
        fn = functions[0]
        props = fn["parameters"].get("properties", {})
        yield "call where none fits", [ToolCall(fn["name"], {p: filler(props[p]) for p in
                                                            fn["parameters"].get("required", []) if p in props})]
        yield "no call", []
        return
    calls = rendered(answer, language, functions)
    yield "answer", calls
    yield "no call", []
    declared = [f["name"] for f in functions]
    other = next((n for n in declared if n != calls[0].name), calls[0].name + "_other")
    yield "wrong function", [ToolCall(other, calls[0].arguments)] + calls[1:]
    spec = next(f for f in functions if f["name"] == calls[0].name)["parameters"]
    required = [p for p in spec.get("required", []) if p in calls[0].arguments]
    if required:
        args = {k: v for k, v in calls[0].arguments.items() if k != required[0]}
        yield "missing required", [ToolCall(calls[0].name, args)] + calls[1:]
    if calls[0].arguments:
        param, value = next(iter(calls[0].arguments.items()))
        yield "wrong type", [ToolCall(calls[0].name, {**calls[0].arguments, param: other_type(value, language)})] \
            + calls[1:]
        yield "value not allowed", [ToolCall(calls[0].name, {**calls[0].arguments,
                                                             param: not_allowed(copy.deepcopy(value), language)})] \
            + calls[1:]
    yield "other allowed values", rendered(answer, language, functions, pick=-1)
    yield "optional left out", [ToolCall(c.name, {k: v for k, v in c.arguments.items() if "" not in params[k]})
                                for c, params in zip(calls, (next(iter(a.values())) for a in answer))]
    for name, change in (("case and punctuation", restyled), ("int for float", whole),
                         ("bool for number", as_bool), ("list item of another type", list_item),
                         ("dict key left out", dict_key_dropped)):
        changed = [ToolCall(c.name, {k: change(v) for k, v in c.arguments.items()}) for c in calls]
        if json.dumps([c.arguments for c in changed]) != json.dumps([c.arguments for c in calls]):  # 5 == 5.0
            yield name, changed
    yield "extra call", calls + calls[:1]
    if len(calls) > 1:
        yield "parallel reordered", calls[::-1]


def texts(calls: list[ToolCall]) -> dict[str, str]:
    """The calls as a model writes them: Hermes blocks after some prose, and a plain JSON list."""
    if not calls:
        return {"prose": "I cannot do that with the tools I have."}
    hermes = "".join(f"<tool_call>\n{json.dumps({'name': c.name, 'arguments': c.arguments})}\n</tool_call>\n"
                     for c in calls)
    return {"hermes": "Let me call the tools.\n" + hermes,
            "json": json.dumps([{"name": c.name, "arguments": c.arguments} for c in calls])}


def bfcl_verdict(bfcl, question, answer, calls, category, language) -> bool:
    decoded = [{c.name: c.arguments} for c in calls]
    if category == "irrelevance":
        return bfcl.is_empty_output(decoded)
    if not calls:  # BFCL: an answer that decodes to no call fails an AST item
        return False
    return bfcl.ast_checker(question["function"], decoded, answer, bfcl.languages[language], category,
                            "wb")["valid"]


def wb_verdict(text, question, answer, language) -> bool:
    parsed = parse_calls(text)
    assert parsed.parsed, parsed.error
    return check_calls(parsed.calls, question["function"], answer, language).correct


def test_bfcl_agreement(bfcl, capsys):
    table, disagreements = [], []
    for category in CATEGORIES:
        language = LANGUAGE.get(category, "python")
        items = bfcl_items(category)
        counts = {"cases": 0, "agree": 0, "correct": 0}
        for question, answer in items:
            for name, calls in perturbations(question, answer, language):
                expected = bfcl_verdict(bfcl, question, answer, calls, category, language)
                for form, text in texts(calls).items():
                    got = wb_verdict(text, question, answer, language)
                    counts["cases"] += 1
                    counts["agree"] += got == expected
                    counts["correct"] += expected
                    if got != expected:
                        disagreements.append(f"{question['id']} {name} ({form}): bfcl {expected}, wb {got}")
        table.append(f"{category:18} {len(items):5} items {counts['cases']:6} cases  agreement "
                     f"{counts['agree'] / counts['cases']:.2%}  (bfcl: {counts['correct']} correct)")
    with capsys.disabled():
        print("\n" + "\n".join(table))
    assert not disagreements, f"{len(disagreements)} disagreements, e.g.\n" + "\n".join(disagreements[:20])

"""Scoring tool calls by the Berkeley Function Calling Leaderboard's AST rules, on wb's ToolCall.

The expected calls are BFCL's possible answers: a list with one `{function: {param: [allowed values]}}` per
expected call, `""` among a parameter's values meaning it may be left out; [] means no call is expected
(BFCL's irrelevance). A call is correct as BFCL's ast_checker judges it:

- as many calls as expected; each expected call is matched, in order, by the first not yet matched call that
  passes it (parallel calls in any order; with several functions declared, the expected one must be chosen);
- the function's name; every required parameter given; no parameter the function or the answer does not have;
- the value's type exactly the declared one (an int is accepted for a float, a tuple for a list), nested one
  level for arrays; a value of the answer's own type where that differs from the declared type (a variable);
- the value among the allowed ones: strings compared without spaces, `,./-_*^` and case (`'` read as `"`),
  lists element-wise so, dicts key by key, lists of dicts dict by dict; every answer parameter without `""` given.

Java and JavaScript items (BFCL's simple_java / simple_javascript) take their arguments as source text, turned
into values by bfcl-eval's own type converters before the same checks.
"""

import re
from dataclasses import dataclass

from workbench.errors import EnvironmentProblem, MissingExtra
from workbench.system.extras import require
from workbench.toolcalls.calls import ToolCall

LANGUAGES = ("python", "java", "javascript")

# BFCL's Python types, and JSON Schema's names for them (OpenAI function specs)
_PYTHON_TYPES = {"string": str, "integer": int, "float": float, "number": float, "boolean": bool, "array": list,
                 "tuple": list, "dict": dict, "object": dict, "any": str}
_NESTED = ("array", "tuple")
_CONVERTED_NESTED = ("Array", "ArrayList", "array")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str = ""  # why not, BFCL's way ("" when correct)
    kind: str = ""  # BFCL's error type, e.g. "simple_function_checker:missing_required"


def expected_from_reference(reference: list[dict]) -> list[dict]:
    """Exact expected calls `[{"name", "arguments"}]` as possible answers: each given value the only one allowed,
    any other parameter not allowed."""
    return [{r["name"]: {k: [v] for k, v in (r.get("arguments") or {}).items()}} for r in reference]


def check_calls(calls: list[ToolCall], functions: list[dict], possible_answer: list[dict],
                language: str = "python") -> Verdict:
    """BFCL's verdict on `calls` against `possible_answer`, with the declared `functions` (BFCL function docs or
    OpenAI function specs: {"name", "parameters": {"properties", "required"}})."""
    if not possible_answer:
        return Verdict(not calls, "" if not calls else "a call where none fits", "irrelevance_error:decoder_success")
    if len(calls) != len(possible_answer):
        return Verdict(False, f"{len(calls)} call(s) where {len(possible_answer)} expected", "wrong_count")
    matched: set[int] = set()
    for i, answer in enumerate(possible_answer):
        name = next(iter(answer))
        function = _declared(functions, name)
        tried = []
        for j, call in enumerate(calls):
            if j in matched:
                continue
            verdict = check_call(call, function, answer[name], language)
            if verdict.correct:
                matched.add(j)
                break
            tried.append(verdict)
        else:
            if len(possible_answer) == 1 and tried:
                return tried[0]
            reasons = "; ".join(v.reason for v in tried)
            return Verdict(False, f"no call matches expected call {i} ({name}): {reasons}", "cannot_find_match")
    return Verdict(True)


def _declared(functions: list[dict], name: str) -> dict:
    function = next((f.get("function", f) for f in functions if f.get("function", f).get("name") == name), None)
    if function is None:
        raise ValueError(f"the expected function {name!r} is not among the declared tools")
    return function


def check_call(call: ToolCall, function: dict, allowed: dict, language: str = "python") -> Verdict:
    """One call against one expected function's allowed values."""
    if call.name != function["name"]:
        return Verdict(False, f"function {call.name!r} where {function['name']!r} expected",
                       "simple_function_checker:wrong_func_name")
    schema = function.get("parameters") or {}
    properties, required = schema.get("properties") or {}, schema.get("required") or []
    for param in required:
        if param not in call.arguments:
            return Verdict(False, f"missing required parameter {param!r}", "simple_function_checker:missing_required")
    for param, value in call.arguments.items():
        if param not in properties or param not in allowed:
            return Verdict(False, f"unexpected parameter {param!r}", "simple_function_checker:unexpected_param")
        verdict = _check_value(param, value, properties[param], allowed[param], language)
        if not verdict.correct:
            return verdict
    for param, values in allowed.items():
        if param not in call.arguments and "" not in values:
            return Verdict(False, f"parameter {param!r} left out, and the answer needs it",
                           "simple_function_checker:missing_optional")
    return Verdict(True)


def _check_value(param: str, value, spec: dict, allowed: list, language: str) -> Verdict:
    declared = spec.get("type")
    nested = None
    if language == "python":
        expected = _PYTHON_TYPES.get(declared)
        if declared in _NESTED:
            nested = _PYTHON_TYPES.get((spec.get("items") or {}).get("type"))
        if isinstance(value, tuple) and declared == "tuple":
            value = list(value)
        if declared in ("float", "number") and type(value) is int:
            value = float(value)
    else:
        try:
            expected, value, nested = _converted(param, value, spec, language)
        except (KeyError, ValueError, NotImplementedError) as exc:  # a type BFCL's converters do not read
            return Verdict(False, f"parameter {param!r}: {language} type {spec.get('type')!r} not readable "
                                  f"({type(exc).__name__}: {exc})", "type_error:unsupported")
        if expected is None:
            return Verdict(False, f"parameter {param!r}: expected its {language} source text, got "
                                  f"{type(value).__name__}", f"type_error:{'java' if language == 'java' else 'js'}")
    verdict, variable = _type_ok(param, value, allowed, declared, expected, nested)
    if not verdict.correct:
        return verdict
    if not variable:
        if expected is dict:
            return _dict_ok(param, value, allowed)
        if expected is list and nested is dict:
            return _list_of_dicts_ok(param, value, allowed)
        if expected is str:
            if _normal(value) not in [_normal(a) for a in allowed if isinstance(a, str)]:
                return _not_allowed(param, value, allowed, "value_error:string")
            return Verdict(True)
        if expected is list:
            # as BFCL, an allowed "" (left out) reads as the empty list
            if [_normal(v) if isinstance(v, str) else v for v in value] not in [
                    [_normal(x) if isinstance(x, str) else x for x in a] for a in allowed
                    if isinstance(a, (list, str))]:
                return _not_allowed(param, value, allowed, "value_error:list/tuple")
            return Verdict(True)
    if value not in allowed:
        return _not_allowed(param, value, allowed, "value_error:others")
    return Verdict(True)


def _converted(param: str, value, spec: dict, language: str):
    """(Python type, value, nested type) of a Java/JavaScript argument, read from its source text by bfcl-eval's
    converters; (None, value, None) when the value is not text."""
    mappings = _bfcl("bfcl_eval.constants.type_mappings", language)
    table = mappings.JAVA_TYPE_CONVERSION if language == "java" else mappings.JS_TYPE_CONVERSION
    declared = spec.get("type")
    expected = table[declared]
    if not isinstance(value, str):
        return None, value, None
    module = "java_type_converter" if language == "java" else "js_type_converter"
    convert = getattr(_bfcl(f"bfcl_eval.eval_checker.ast_eval.type_convertor.{module}", language), module)
    if declared in _CONVERTED_NESTED:
        inner = (spec.get("items") or {}).get("type")
        return expected, convert(value, declared, inner), table[inner]
    return expected, convert(value, declared), None


def _bfcl(module: str, language: str):
    try:
        return require(module, f"Scoring {language} tool calls")
    except MissingExtra:  # not an extra: installed without its dependencies (scripts/setup.sh)
        raise EnvironmentProblem(f"Scoring {language} tool calls needs bfcl-eval's type converters: "
                                 "pip install --no-deps bfcl-eval") from None


def _answer_type(allowed: list):
    return next((type(a) for a in allowed if a != ""), None)


def _type_ok(param: str, value, allowed: list, declared, expected, nested) -> tuple[Verdict, bool]:
    """(verdict, is the value a variable): a value of the declared type, else of the answer's own type where the
    answer's type differs from the declared one (BFCL's variables)."""
    answer_type = _answer_type(allowed)
    variable = answer_type is not None and answer_type != expected
    if type(value) is expected:
        if nested is None:
            return Verdict(True), variable
        for option in allowed:
            if type(option) is not list:
                return Verdict(True), variable  # BFCL: a non-list allowed value does not check the items
            if all(_type_ok(param, item, option, str(nested), nested, None)[0].correct for item in value):
                return Verdict(True), variable
        # BFCL: a nested failure stands, whatever the answer's type
        return Verdict(False, f"parameter {param!r}: items not all of type {nested.__name__}", "type_error:nested"), \
            False
    else:
        wrong = Verdict(False, f"parameter {param!r}: type {type(value).__name__} where {declared} expected",
                        "type_error:simple")
    if answer_type is not None and type(value) is answer_type:
        return Verdict(True), True
    return wrong, False


def _normal(text: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _not_allowed(param: str, value, allowed: list, kind: str) -> Verdict:
    return Verdict(False, f"parameter {param!r}: {value!r} is not one of {allowed}", kind)


def _dict_ok(param: str, value: dict, allowed: list) -> Verdict:
    """A dict value: some allowed dict whose keys it only uses, each value allowed, each key without "" given."""
    verdict = Verdict(False, f"parameter {param!r}: no allowed value", "dict_checker:unclear")
    for option in allowed:
        if option == "":
            continue
        verdict = _one_dict_ok(value, option)
        if verdict.correct:
            return verdict
    return verdict


def _one_dict_ok(value: dict, option: dict) -> Verdict:
    for key, item in value.items():
        if key not in option:
            return Verdict(False, f"unexpected dict key {key!r}", "value_error:dict_key")
        normal = [_normal(a) if isinstance(a, str) else a for a in option[key]]
        if (_normal(item) if isinstance(item, str) else item) not in normal:
            return Verdict(False, f"dict key {key!r}: {item!r} is not one of {option[key]}", "value_error:dict_value")
    for key, values in option.items():
        if key not in value and "" not in values:
            return Verdict(False, f"missing dict key {key!r}", "value_error:dict_key")
    return Verdict(True)


def _list_of_dicts_ok(param: str, value: list, allowed: list) -> Verdict:
    verdict = Verdict(False, f"parameter {param!r}: no allowed value", "list_dict_checker:unclear")
    for option in allowed:
        if len(value) != len(option):
            verdict = Verdict(False, f"parameter {param!r}: {len(value)} dicts where {len(option)} expected",
                              "value_error:list_dict_count")
            continue
        results = [_dict_ok(param, v, [o]) for v, o in zip(value, option)]
        failed = next((r for r in results if not r.correct), None)
        if failed is None:
            return Verdict(True)
        verdict = failed
    return verdict

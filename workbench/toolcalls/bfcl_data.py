"""BFCL's own files as eval items (a suite task's `format: bfcl`).

A question file `BFCL_v4_CATEGORY.json` (one JSON object per line: id, question: the turns, function: the
declared functions in BFCL's own types) and its possible-answer file `possible_answer/BFCL_v4_CATEGORY.json` beside
it (id, ground_truth). Irrelevance categories have no possible answers: no call is expected. The functions become
OpenAI function specs (`tools`) for the template, as BFCL hands them to function-calling models (`dict` an
object, `float` a number, `tuple` an array, `any` a string; Java and JavaScript parameters as strings holding
their source text); the checker keeps BFCL's own types (`functions`).
"""

import copy
from pathlib import Path

from workbench.errors import BadInput
from workbench.system.user_files import json_lines

_OPENAI_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string", "list": "array",
                 "bool": "boolean"}


def language_of(path: Path) -> str:
    """BFCL's language of a category file: java and javascript have their own, the rest is Python."""
    if "javascript" in path.stem:
        return "javascript"
    return "java" if "java" in path.stem else "python"


def openai_function(function: dict, language: str = "python") -> dict:
    """A BFCL function doc as an OpenAI tool `{"type": "function", "function": {...}}`."""
    fn = copy.deepcopy(function)
    params = fn.setdefault("parameters", {"type": "object", "properties": {}})
    if language == "python":
        _openai_schema(params)
    else:
        params["type"] = "object"
        for spec in (params.get("properties") or {}).values():
            spec["description"] = (f"{spec.get('description', '')} This is {language.capitalize()} "
                                   f"{spec.get('type')} type parameter in string representation.").strip()
            spec["type"] = "string"
            spec.pop("items", None)
    return {"type": "function", "function": fn}


def _openai_schema(schema: dict) -> None:
    if schema.get("type") in _OPENAI_TYPES:
        schema["type"] = _OPENAI_TYPES[schema["type"]]
    for spec in (schema.get("properties") or {}).values():
        _openai_schema(spec)
    if isinstance(schema.get("items"), dict):
        _openai_schema(schema["items"])


def load_bfcl_items(path: Path) -> list[dict]:
    """The items of a BFCL question file, with their expected calls; BadInput when the file or its possible-answer
    file is missing or not BFCL's."""
    if not path.is_file():
        raise BadInput(f"no such file {path}")
    answers_path = path.parent / "possible_answer" / path.name
    irrelevance = "irrelevance" in path.stem
    if not irrelevance and not answers_path.is_file():
        raise BadInput(f"{path}: format: bfcl needs its possible-answer file {answers_path} (bfcl-eval ships both)")
    answers = {}
    if not irrelevance:
        for _, where, row in json_lines(answers_path):
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("ground_truth"), list):
                raise BadInput(f"{where}: expected BFCL's {{\"id\", \"ground_truth\": [...]}}")
            answers[str(row["id"])] = row["ground_truth"]
    language = language_of(path)
    items = []
    for _, where, row in json_lines(path):
        question, functions = (row.get("question"), row.get("function")) if isinstance(row, dict) else (None, None)
        if not isinstance(question, list) or not question or not isinstance(question[0], list) \
                or not isinstance(functions, list) or "id" not in row:
            raise BadInput(f"{where}: expected BFCL's {{\"id\", \"question\": [[messages]], \"function\": [...]}}")
        item_id = str(row["id"])
        if not irrelevance and item_id not in answers:
            raise BadInput(f"{where}: item '{item_id}' has no possible answer in {answers_path}")
        items.append({"id": item_id, "messages": question[0], "reference": None, "tags": [],
                      "metadata": {"category": path.stem.split("_", 2)[-1]},
                      "tools": [openai_function(f, language) for f in functions], "functions": functions,
                      "possible_answer": answers.get(item_id, []), "language": language})
    if not items:
        raise BadInput(f"{path}: no rows")
    return items

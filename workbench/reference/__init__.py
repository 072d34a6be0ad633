"""The reference of every file a user writes (suite, gates, recipe, sweep), generated from the pydantic models that
read them, so the docs cannot drift from the code: a Markdown page per file kind (docs/reference/) and a JSON Schema
per kind (`wb schema KIND`) that editors use through yaml-language-server.

Regenerate the docs with `python -m workbench.reference docs/reference`; tests/test_reference.py fails when they are
out of date."""

import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from workbench.config import SCORER_TYPES, ScorerSpec
from workbench.errors import BadInput


@dataclass(frozen=True)
class FileKind:
    name: str
    title: str
    model: str  # "module:Class", imported when asked for
    intro: str
    example: str | None  # a bundled file, relative to the repository, shown as the example


KINDS = {k.name: k for k in (
    FileKind("suite", "Eval suite (`wb eval --suite FILE.yaml`)", "workbench.config:SuiteConfig",
             "Tasks scored on the checkpoint's own generations, lm-eval regression tasks, gates and the judge. "
             "Paths inside are relative to the suite file.", "evals/suites/contacts.yaml"),
    FileKind("gates", "Gate file (`wb eval --gates FILE.yaml`)", "workbench.gate.rules:GatesFile",
             "Release gates on a run's metrics, kept apart from the suite (the same entries a suite's `gates:` "
             "takes). Decision rules: docs/ci-gate.md.", "evals/gates/release.yaml"),
    FileKind("recipe", "Training recipe (`wb train FILE.yaml`)", "workbench.config:TrainConfig",
             "What `wb train` fine-tunes, on which data, with which PEFT method and TRL trainer. Paths inside are "
             "relative to the recipe.", "evals/recipes/contacts-lora.yaml"),
    FileKind("sweep", "Sweep file (`wb sweep FILE.yaml`)", "workbench.sweep.config:SweepConfig",
             "Many checkpoints times many suites, locally or on a Ray cluster; `wb eval`'s settings by the same "
             "names. Paths inside are relative to the sweep file.", None),
)}


def model_of(kind: str) -> type[BaseModel]:
    if kind not in KINDS:
        raise BadInput(f"unknown file kind '{kind}': expected one of {', '.join(KINDS)}")
    import importlib

    module, name = KINDS[kind].model.split(":")
    return getattr(importlib.import_module(module), name)


def json_schema(kind: str) -> dict:
    """The JSON Schema of a file kind, for yaml-language-server (`# yaml-language-server: $schema=FILE`)."""
    schema = model_of(kind).model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": KINDS[kind].title}


def _type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if annotation is typing.Any:
        return "any"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is tuple:
        return f"[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return "mapping" if not args or args[1] is typing.Any else f"mapping of {_type_name(args[1])}"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "dict": "mapping"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation)


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least", "max_length": "at most"}


def _constraints(field) -> str:
    said = []
    for meta in field.metadata:
        for attr, sign in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                said.append(f"{sign} {value}" + (" item(s)" if "length" in attr else ""))
    return ", ".join(said)


def _default(field) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return ""
    if isinstance(value, BaseModel):
        return "(its defaults)"
    return f"`{json.dumps(value)}`"


def _nested(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a)]


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """root and every model reachable from its fields, each after the model that first uses it (depth first)."""
    seen: list[type[BaseModel]] = []

    def visit(model):
        if model not in seen:
            seen.append(model)
            for field in model.model_fields.values():
                for nested in _nested(field.annotation):
                    visit(nested)

    visit(root)
    return seen


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def markdown(kind: str, repo: Path | None = None) -> str:
    """The reference page of a file kind: every key of every section, its type, default, constraints and meaning."""
    spec, root = KINDS[kind], model_of(kind)
    generated = (f"Generated from `{spec.model}` by `python -m workbench.reference docs/reference`; do not edit by "
                 f"hand. JSON Schema: `wb schema {kind} > {kind}.schema.json`, then `# yaml-language-server: "
                 f"$schema={kind}.schema.json` atop the file.")
    lines = [f"# {spec.title}", "", spec.intro, "", generated, ""]
    for model in _models(root):
        lines += [f"## {model.__name__}", ""]
        if model.__doc__ and model.__doc__ is not BaseModel.__doc__:
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = _cell(field.description or "")
            bounds = _constraints(field)
            if bounds:
                meaning = f"{meaning} ({bounds})" if meaning else bounds
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
        lines.append("")
        if model is ScorerSpec:
            lines += ["### Scorer types", "", "A sample's reference may be a list of strings: several acceptable "
                      "answers, the best-scoring one counts.", "", "| type | scores a sample |", "|---|---|"]
            lines += [f"| `{name}` | {_cell(text)} |" for name, text in SCORER_TYPES.items()] + [""]
    if spec.example and repo is not None and (repo / spec.example).is_file():
        lines += ["## Example", "", f"`{spec.example}`, as bundled:", "", "```yaml",
                  (repo / spec.example).read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(lines)


def index() -> str:
    lines = ["# Reference: the files you write", "",
             "Every key each file takes, generated from the code that reads it.", ""]
    lines += [f"- [{spec.title}]({name}.md), JSON Schema [{name}.schema.json]({name}.schema.json)"
              for name, spec in KINDS.items()]
    return "\n".join(lines) + "\n"


def pages(repo: Path) -> dict[str, str]:
    """Every file of docs/reference/, by name."""
    out = {"README.md": index()}
    for name in KINDS:
        out[f"{name}.md"] = markdown(name, repo)
        out[f"{name}.schema.json"] = json.dumps(json_schema(name), indent=2) + "\n"
    return out

"""docs/reference/ is generated from the models that read users' files: it must be regenerated when they change,
every key must say what it means, and `wb schema` gives each file kind's JSON Schema."""

import json
from pathlib import Path

import pytest

from workbench.reference import KINDS, json_schema, model_of, pages
from workbench.reference import _models as models_of

REPO = Path(__file__).resolve().parents[1]


def test_docs_reference_is_up_to_date():
    folder = REPO / "docs" / "reference"
    stale = [name for name, text in pages(REPO).items()
             if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]
    assert not stale, f"regenerate with `python -m workbench.reference docs/reference`: {stale}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_key_says_what_it_means(kind):
    missing = [f"{model.__name__}.{name}" for model in models_of(model_of(kind))
               for name, field in model.model_fields.items() if not (field.description or "").strip()]
    assert not missing, missing


@pytest.mark.parametrize("kind", sorted(k for k, spec in KINDS.items() if spec.example))
def test_schema_validates_the_bundled_example(kind):
    jsonschema = pytest.importorskip("jsonschema", reason="needs the eval extra (jsonschema)")
    import yaml

    example = KINDS[kind].example
    schema = json_schema(kind)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    data = yaml.safe_load((REPO / example).read_text())
    jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "no_such_key": 1}, schema)


def test_wb_schema_prints_the_json_schema(capsys):
    from hostile_support import run_cli  # the environment put back afterwards

    res = run_cli(["schema", "suite"], capsys)
    assert res.code == 0 and json.loads(res.stdout) == json_schema("suite")
    res = run_cli(["schema", "nope"], capsys)
    assert res.code == 3 and "suite, gates, recipe, sweep" in res.stderr

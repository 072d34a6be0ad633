"""`wb schema KIND`: the JSON Schema of a file users write (suite, gates, recipe, sweep), or its reference page."""

import typer

from workbench.cli.output import emit_json


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


def schema(kind: str = typer.Argument(..., help="suite, gates, recipe or sweep."),
           markdown: bool = typer.Option(False, "--markdown", help="The reference page (Markdown) instead.")):
    """Print the JSON Schema of a file kind, for editors: `wb schema suite > suite.schema.json`, then
    `# yaml-language-server: $schema=suite.schema.json` atop the suite."""
    from workbench.reference import json_schema, model_of
    from workbench.reference import markdown as page

    model_of(kind)  # an unknown kind: one line naming the valid ones
    if markdown:
        typer.echo(page(kind))
    else:
        emit_json(json_schema(kind))

"""``galaxymorph schemas``: list and show the decision trees."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from galaxymorph.schema import get_schema, list_schemas

app = typer.Typer(help="List the built-in decision trees, or show one.", invoke_without_command=True)
console = Console()


@app.callback()
def list_all(ctx: typer.Context) -> None:
    """List the built-in decision trees."""
    if ctx.invoked_subcommand:
        return
    table = Table("name", "questions", "answers", "description")
    for name in list_schemas():
        schema = get_schema(name)
        table.add_row(name, str(schema.n_questions), str(schema.n_answers), schema.description)
    console.print(table)


@app.command()
def show(
    name: str = typer.Argument(..., help="A built-in tree name, or a .toml/.yaml/.json file."),
    campaign: str = typer.Option(None, help="Suffix question names, e.g. dr8 (keeps campaigns apart)."),
) -> None:
    """Show a tree: its questions in order, their answer columns, and what leads to each."""
    schema = get_schema(name, campaign=campaign)
    table = Table("#", "question", "answer columns", "asked after", title=f"{schema.name}: {schema.description}")
    for i, q in enumerate(schema.questions, 1):
        table.add_row(str(i), f"{q.name}\n[dim]{q.text}[/dim]", "\n".join(q.columns), "\n".join(q.after) or "(first)")
    console.print(table)

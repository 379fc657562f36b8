"""`scaleplan laws`: list the shipped law files with their formulas and sources."""

from __future__ import annotations

import click


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def laws(fmt: str) -> None:
    """List the shipped law files (published presets and the project's own fits)."""
    import json

    from scaleplan.laws import list_laws

    found = list_laws()
    if fmt == "json":
        click.echo(json.dumps([law.to_dict() for law in found], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="shipped laws (fits/)", title_justify="left")
    for col in ("name", "formulas", "inputs", "source"):
        table.add_column(col)
    for law in found:
        formulas = [f"{p.target} = {p.formula()}" for p in law.laws()]
        if law.loss_law is not None:
            ll = law.loss_law
            formulas.append(f"L = {ll.E:g} + {ll.A:g}/N^{ll.alpha:g} + {ll.B:g}/D^{ll.beta:g}")
        inputs = "; ".join(f"{v.name}: {v.meaning}" for v in law.variables)
        table.add_row(law.name, "\n".join(formulas), inputs, law.provenance.citation or law.provenance.source)
    Console(width=160).print(table)

"""Markdown tables of the committed reports and README, read for the tests that check figures against them."""

from __future__ import annotations


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table in `text`: its header cells and its body rows' cells (stripped), in order."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            tables.append((header, []))
        elif not line.startswith("|---"):
            tables[-1][1].append(cells)
    return tables

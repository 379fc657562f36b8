"""The README's search-efficiency table is the committed benchmark report's (benchmarks/results/search_efficiency.md)."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_tables import markdown_tables

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "benchmarks" / "results" / "search_efficiency.md"
FAMILIES = {"MLP teacher-student": "mlp", "GPT char-LM": "gpt", "DenseAM": "denseam"}


def table(text: str, leading: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of the first markdown table whose header row starts with the headers `leading`, as {header: cell}."""
    header, rows = next((h, r) for h, r in markdown_tables(text) if tuple(h[:len(leading)]) == leading)
    return [dict(zip(header, cells)) for cells in rows]


def expected(report: dict[str, dict[str, str]], column: str) -> str:
    """What a README column must say, from the report's rows by method."""
    ratio = lambda method, key: report[method][key].split(" (")[0]  # noqa: E731  "14.7x (5/5)" -> "14.7x"
    cells = {
        "adaptive: until every width's lr* costs ≤ 0.3%": lambda: report["adaptive"]["regret ≤ 0.3%: grid/method (reps met)"],
        "adaptive: until every lr* is within ±10%": lambda: report["adaptive"]["±10%: grid/method (reps met)"],
        "adaptive: its whole run (it stops itself), regret then":
            lambda: f"{report['adaptive']['whole run: grid/method']}, {report['adaptive']['regret at end']}",
        "adaptive, `max_regret = 0`: until every lr* is within ±10%": lambda: report["adaptive-tol"]["±10%: grid/method (reps met)"],
        "adaptive, `max_regret = 0`: its whole run, largest error then (ln lr)":
            lambda: f"{report['adaptive-tol']['whole run: grid/method']}, {report['adaptive-tol']['error at end']}",
        "TPE / GP, regret ≤ 0.3%":
            lambda: f"{ratio('tpe', 'regret ≤ 0.3%: grid/method (reps met)')} / {ratio('gp', 'regret ≤ 0.3%: grid/method (reps met)')}",
    }
    return cells[column]().replace("x", "×")


def test_readme_search_table_is_the_committed_report() -> None:
    report = table(REPORT.read_text(), ("family", "method", "±10%: grid/method (reps met)"))
    assert {r["method"] for r in report} == {"grid", "random", "tpe", "gp", "adaptive", "adaptive-tol"}
    section = (ROOT / "README.md").read_text().split("## Search: fewer trials per width", 1)[1]
    readme = table(section, ("family", "adaptive: until every width's lr* costs ≤ 0.3%"))
    assert [r["family"] for r in readme] == list(FAMILIES)
    for row in readme:
        by_method = {r["method"]: r for r in report if r["family"] == FAMILIES[row["family"]]}
        for column, cell in row.items():
            if column != "family":
                assert re.sub(r"\*", "", cell) == expected(by_method, column), (row["family"], column)


def test_readme_eight_triples_sentence_is_the_committed_report() -> None:
    report = table((REPORT.parent / "search_efficiency_8sets.md").read_text(), ("family", "method", "±10%: grid/method (reps met)"))
    cell = {(r["family"], r["method"]): r["±10%: grid/method (reps met)"] for r in report}
    ratio = lambda method: " / ".join(cell[(f, method)].split(" (")[0] for f in FAMILIES.values())  # noqa: E731
    met = lambda method: re.findall(r"\((\d+)/8\)", " ".join(cell[(f, method)] for f in FAMILIES.values()))  # noqa: E731
    tol, default = met("adaptive-tol"), met("adaptive")
    sentence = (f"after {ratio('adaptive-tol')} fewer trial-steps ({tol[0]}, {tol[1]} and {tol[2]} of 8), the default "
                f"{ratio('adaptive')} ({default[0]}, {default[1]} and {default[2]} of 8).").replace("x", "×")
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert sentence in readme

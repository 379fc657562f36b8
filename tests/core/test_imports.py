"""The import boundary: the planner path (cli, core, laws, plan) never imports torch, scipy, pandas,
statsmodels, matplotlib or optuna, at module level or through any scaleplan module it imports.

Checked twice: statically (an import-linter-style contract over every module-level import, followed
transitively through scaleplan's own modules) and at run time (`scaleplan predict` in a fresh
interpreter, then sys.modules is inspected).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "scaleplan"
HEAVY = ("torch", "scipy", "pandas", "statsmodels", "matplotlib", "optuna", "numpy", "sqlalchemy")
# The torch-free side of the contract: every module under these packages, plus these modules.
LIGHT_PACKAGES = ("core", "laws", "plan")
LIGHT_MODULES = ("scaleplan", "scaleplan.cli", "scaleplan.errors")


def module_path(name: str) -> Path | None:
    """The file of a scaleplan module (package __init__ or plain module), None for non-scaleplan names."""
    if name != "scaleplan" and not name.startswith("scaleplan."):
        return None
    parts = name.split(".")[1:]
    base = PACKAGE.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported at module level (not inside functions or TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(tree.body)
    return found


def import_closure(start: str) -> dict[str, str]:
    """Every module reachable from `start` by module-level imports: {module: the scaleplan module importing it}."""
    seen: dict[str, str] = {start: "<start>"}
    todo = [start]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if path is None:
            continue
        for dep in top_level_imports(path, name):
            parents = [dep.rsplit(".", i)[0] for i in range(dep.count(".") + 1)]  # importing a.b.c imports a, a.b
            for mod in parents:
                if mod not in seen:
                    seen[mod] = name
                    todo.append(mod)
    return seen


def light_modules() -> list[str]:
    names = list(LIGHT_MODULES)
    for package in LIGHT_PACKAGES:
        for path in sorted((PACKAGE / package).glob("*.py")):
            names.append(f"scaleplan.{package}" if path.stem == "__init__" else f"scaleplan.{package}.{path.stem}")
    return names


@pytest.mark.parametrize("module", light_modules())
def test_planner_modules_import_nothing_heavy(module: str) -> None:
    closure = import_closure(module)
    heavy = sorted(m for m in closure if m.split(".")[0] in HEAVY)
    assert not heavy, f"{module} imports {heavy[0]} via {closure[heavy[0]]}"


def test_the_contract_catches_a_heavy_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a module importing torch, behind another module, is found with its importer."""
    pkg = tmp_path / "scaleplan"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("from scaleplan.core import a\n")
    (pkg / "core" / "a.py").write_text("from . import b\n")
    (pkg / "core" / "b.py").write_text("import os\nif True:\n    import torch.nn\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    closure = import_closure("scaleplan.core")
    assert closure["torch"] == "scaleplan.core.b"


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--params", "7B", "--tokens", "2T"],
        ["predict", "--width", "1024", "--law", "fits/transfer-gpt-mup.json"],
        ["predict", "--compute", "1e23"],
        ["laws"],
        ["--help"],
    ],
)
def test_planner_commands_load_no_heavy_module(args: list[str]) -> None:
    code = (
        "import sys, json\nfrom scaleplan.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

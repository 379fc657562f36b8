"""Find law files: a path, or the name of one shipped in fits/ (e.g. `steplaw`, `fits/mlp-mup`)."""

from __future__ import annotations

import difflib
from pathlib import Path

from scaleplan.errors import ScaleplanError
from scaleplan.laws.schema import LawFile


def shipped_dir() -> Path:
    """fits/ of a source checkout (editable install), else the copy packaged as scaleplan/_fits."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_fits"
    return packaged if packaged.is_dir() else package.parent / "fits"


def list_laws() -> list[LawFile]:
    """Every law shipped in fits/ (published presets and the project's own fits), by name."""
    return sorted((LawFile.load(p) for p in shipped_dir().glob("*.json")), key=lambda law: law.name)


def load_law(name_or_path: str | Path) -> LawFile:
    """Load a law by path (anything ending in .json or containing a slash, or an existing file) or by shipped name.

    A shipped name wins over a file of the same name in the current folder.
    """
    text = str(name_or_path)
    if text.endswith(".json") or "/" in text or "\\" in text:
        return LawFile.load(Path(text))
    path = shipped_dir() / f"{text}.json"
    if path.is_file():
        return LawFile.load(path)
    if Path(text).is_file():  # e.g. `--law notes.txt`: read it, so the error says what is wrong with the file
        return LawFile.load(Path(text))
    names = sorted(p.stem for p in shipped_dir().glob("*.json"))
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ScaleplanError(f"unknown law '{text}': {hint}shipped laws are {', '.join(names)} (or give a path to a .json file)")

"""import_callable: a user's `module:function`, every failure one line naming what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scaleplan.core.callables import import_callable
from scaleplan.errors import ScaleplanError


@pytest.mark.parametrize("source, target, message", [
    ("def train(:\n", "broken_syntax:train", r"^objective module 'broken_syntax' raised while importing: SyntaxError: "),
    ("raise RuntimeError('no GPU here')\n", "raises_on_import:train", r"raised while importing: RuntimeError: no GPU here$"),
    ("train = 3\n", "not_a_function:train", r"^objective 'not_a_function:train': 'train' is not a function \(it is 3\)$"),
    ("def other(p):\n    return 1.0\n", "no_such_function:train", r"module 'no_such_function' has no function 'train'$"),
])
def test_a_broken_user_module_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, target: str,
                                          message: str) -> None:
    module = target.partition(":")[0]
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ScaleplanError, match=message):
            import_callable(target, "objective")
    finally:
        sys.modules.pop(module, None)


def test_a_function_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "good_objective.py").write_text("def train(p):\n    return 2.0 * p\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_callable("good_objective:train", "objective")(3.0) == 6.0
    finally:
        sys.modules.pop("good_objective", None)

"""Built-in offline tasks: noisy teacher-student, patterns (for the DenseAM), char-level LM.

`get_task(name, **kwargs)` builds one; instances are cached per (name, kwargs) because a sweep
trains hundreds of trials on the same task and the data (teacher, corpus, held-out set) is fixed.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from typing import Any

from scaleplan.core.numbers import is_finite_number
from scaleplan.errors import ScaleplanError, SpecError
from scaleplan.tasks.base import Task
from scaleplan.tasks.charlm import CharLM
from scaleplan.tasks.patterns import Patterns
from scaleplan.tasks.teacher_student import TeacherStudent

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (TeacherStudent, Patterns, CharLM)}

__all__ = ["TASKS", "Task", "get_task", "TeacherStudent", "Patterns", "CharLM"]


def get_task(name: str, **kwargs: Any) -> Task:
    """The task `name` built with `kwargs` (cached); unknown names or kwargs raise ScaleplanError."""
    return _cached_task(name, json.dumps(kwargs, sort_keys=True, default=str))


@functools.lru_cache(maxsize=16)
def _cached_task(name: str, kwargs_json: str) -> Task:
    if name not in TASKS:
        raise ScaleplanError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    kwargs = json.loads(kwargs_json)
    allowed = [f for f in cls.__dataclass_fields__ if not f.startswith("_")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ScaleplanError(f"task {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(allowed)}")
    _check_types(name, cls, kwargs)
    return cls(**kwargs)


def _check_types(name: str, cls: type[Task], kwargs: dict[str, Any]) -> None:
    """Each option has its field's type: a quoted number or a fractional count is refused, naming the option."""
    hints = typing.get_type_hints(cls)
    for key, value in kwargs.items():
        if not _fits(value, hints[key]):
            default = getattr(cls, key)
            example = "" if default is None else f" (default: {key} = {json.dumps(default)})"
            raise SpecError(f"task {name!r}: option {key} must be {_describe(hints[key])}, got {value!r}; fix it in [task] kwargs{example}")


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a kwarg's value has its field's type: int (not bool), a finite number, str, None, a Literal's value."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is float:
        return is_finite_number(value)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    """'an integer', 'a finite number', 'a string', 'one of 'classify', 'denoise'', joined by 'or'."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(annotation)))
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", type(None): "unset"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))

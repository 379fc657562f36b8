"""Built-in offline tasks: noisy teacher-student, patterns (for the DenseAM), char-level LM.

`get_task(name, **kwargs)` builds one; instances are cached per (name, kwargs) because a sweep
trains hundreds of trials on the same task and the data (teacher, corpus, held-out set) is fixed.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from scaleplan.errors import ScaleplanError
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
    return cls(**kwargs)

"""The registry of task specs: one per task kind, by name (None: the backbone's embeddings)."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

from .base import Discriminator, Generator, TaskSpec, did_you_mean
from .classification import SequenceClassification, TextMatching, TextRegression
from .reading_comprehension import ReadingComprehension
from .tagging import TokenClassification

SPECS: Dict[Optional[str], TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    SPECS[spec.name] = spec
    return spec


for _spec in (TaskSpec(), Discriminator(), Generator(), SequenceClassification(), TextMatching(),
              TextRegression(), TokenClassification(), ReadingComprehension()):
    register(_spec)


def task_names() -> Tuple:
    return tuple(SPECS)


def unknown_task(task, names: Sequence) -> ValueError:
    """The error for a task name not among `names`, with the closest one and the choices."""
    return ValueError(f"unknown task {task!r}{did_you_mean(task, [n for n in names if n])}; "
                      f"choose one of {', '.join(map(repr, names))}")


def get_spec(task: Optional[str]) -> TaskSpec:
    """The spec of `task`; unknown: ValueError naming the choices."""
    spec = SPECS.get(task) if task is None or isinstance(task, str) else None
    if spec is None:
        raise unknown_task(task, task_names())
    return spec

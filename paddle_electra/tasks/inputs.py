"""Checking PaddleHub-style input `[[text_a(, text_b)], ...]` (the hub module, its serving, the
pipeline, batch prediction): `check_text`, the one rule for a text of a request (valid Unicode, within
a length), and `check_data`, the examples of a task."""
from __future__ import annotations

from typing import List, Optional

from .registry import get_spec


def type_name(x) -> str:
    return type(x).__name__


def check_text(text: str, where: str, max_chars: Optional[int] = None) -> str:
    """`text` is valid Unicode (a lone surrogate such as "\\ud800" is a str, and JSON, but no text the
    tokenizer can take) and at most `max_chars` long; errors name `where` (e.g. data[3][0])."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where} is not valid Unicode: lone surrogate U+{ord(text[e.start]):04X} "
                         f"at character {e.start}") from None
    if max_chars is not None and len(text) > max_chars:
        raise ValueError(f"{where} has {len(text)} characters; at most {max_chars} per text")
    return text


def check_data(data, task: Optional[str], max_texts: Optional[int] = None,
               max_chars: Optional[int] = None) -> List[List[str]]:
    """PaddleHub's input shape `[[text_a], [text_a, text_b], ...]` checked for `task`; returns a copy."""
    spec = get_spec(task)
    want, shape = spec.texts, spec.shape
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"data must be a list of examples like {shape}, got {type_name(data)}")
    if not data:
        raise ValueError("data is empty: give at least one example")
    if max_texts is not None and len(data) > max_texts:
        raise ValueError(f"data has {len(data)} items; at most {max_texts} per request")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            raise TypeError(f"data[{i}] is a string; each example is a list of texts: {shape} "
                            f"(wrap it: [{item[:20]!r}])")
        if not isinstance(item, (list, tuple)) or len(item) not in want:
            n = len(item) if isinstance(item, (list, tuple)) else type_name(item)
            raise ValueError(f"data[{i}] must hold {' or '.join(map(str, want))} text(s) for task {task!r} "
                             f"({shape}), got {n}")
        for j, text in enumerate(item):
            if not isinstance(text, str):
                raise TypeError(f"data[{i}][{j}] must be a string, got {type_name(text)} {text!r}")
            check_text(text, f"data[{i}][{j}]", max_chars)
            if not any(c.isprintable() and not c.isspace() for c in text):
                # spaces, control and format characters only ("\x00\x01\x02", zero-width spaces): no text
                raise ValueError(f"data[{i}][{j}] is empty" + (" (it holds no printable character)" if text.strip()
                                                                else ""))
        out.append([str(t) for t in item])
    return out

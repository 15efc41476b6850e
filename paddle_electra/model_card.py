"""The model card (README.md) written with every fine-tuned model and every `paddle-electra export`
folder: what the model is for (task, labels), what made it (data files, the command line, date,
paddle-electra version) and how well it did (scores).

A card we write starts with MARKER; a README.md without it is the user's and is never replaced
(`write` leaves it and says so). Writes are atomic: the file is written beside and renamed in.
"""
from __future__ import annotations

import datetime
import logging
import os
import shlex
import sys
import tempfile
from typing import Dict, Optional, Sequence

from .io import MODEL_CARD_NAME

logger = logging.getLogger(__name__)

MARKER = "<!-- model card written by paddle-electra; it is replaced when this folder is written again -->"


COMMAND_ENV = "PADDLE_ELECTRA_COMMAND_LINE"  # set by paddle_electra.cli.main (kept by relaunched workers)


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command that is running, as a shell line (`paddle-electra finetune ...`): the CLI's, else
    this process's."""
    if argv is None and os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    argv = list(sys.argv if argv is None else argv)
    prog = os.path.basename(argv[0]) if argv else "python"
    if prog in ("__main__.py", "cli.py"):
        prog = "paddle-electra"
    return " ".join([prog] + [shlex.quote(a) for a in argv[1:]])


def _cell(value) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render(title: str, fields: Dict[str, object], usage: Optional[str] = None,
           scores: Optional[Dict[str, Dict[str, float]]] = None) -> str:
    """The card's text: MARKER, a title, a table of `fields` (None values left out), the scores per
    split ({"dev": {"accuracy": 81.0}}) and a usage snippet."""
    from . import __version__
    rows = {**{k: v for k, v in fields.items() if v is not None},
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "paddle-electra": __version__}
    lines = [MARKER, f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows.items()]
    if scores:
        lines += ["", "## Scores", "", "| split | metric | value |", "|---|---|---|"]
        for split, metrics in scores.items():
            for k, v in (metrics or {}).items():
                lines.append(f"| {split} | {k} | {v:.2f} |" if isinstance(v, float) else f"| {split} | {k} | {v} |")
    if usage:
        lines += ["", "## Use", "", "```", usage.strip(), "```"]
    return "\n".join(lines) + "\n"


def is_ours(path: str) -> bool:
    """Whether `path` is a card this package wrote (its first line is MARKER)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def user_card(folder: str) -> Optional[bytes]:
    """The bytes of the user's own README.md in `folder` (one without MARKER), else None: read before
    a writer replaces the folder, for `write` to put back."""
    path = os.path.join(folder, MODEL_CARD_NAME)
    if os.path.isfile(path) and not os.path.islink(path) and not is_ours(path):
        with open(path, "rb") as f:
            return f.read()
    return None


def write(folder: str, text: str, previous_user_card: Optional[bytes] = None) -> bool:
    """Write the card `text` as folder/README.md in one rename, unless the folder holds (or held,
    `previous_user_card`) a README.md of the user's, which is kept (put back when given). True when
    the card was written."""
    path = os.path.join(folder, MODEL_CARD_NAME)
    keep = previous_user_card
    if keep is None and os.path.lexists(path) and not is_ours(path):
        logger.warning("%s is not a model card of ours (no marker line): left as it is, no card written", path)
        return False
    data = keep if keep is not None else text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{MODEL_CARD_NAME}.tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if keep is not None:
        logger.warning("%s: your README.md was kept (no model card written)", folder)
    return keep is None

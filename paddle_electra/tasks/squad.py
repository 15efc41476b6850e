"""Reading data files as the datasets give them: text (UTF-8, a byte-order mark dropped), a text
field checked, and SQuAD-format questions (CMRC 2018, DRCD): the one reader of the reading-comprehension
data, for fine-tuning's cmrc2018 / drcd and the hub module's ReadingComprehensionDataset. Every error is
a DataError naming the file, the line or JSON path, and the field."""
from __future__ import annotations

import json
import logging
import os
from typing import List

from ..io import DataError
from .base import QAExample

logger = logging.getLogger(__name__)


def read_text(path: str) -> str:
    """The file as text: UTF-8, a byte-order mark dropped; not UTF-8 -> DataError with the line."""
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder; expected a data file")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}); "
                        f"save the file as UTF-8") from None


def text_field(value, where: str, name: str) -> str:
    """A non-empty text, or DataError naming the field."""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a text, got "
                        f"{'nothing' if value is None else type(value).__name__ + ' ' + repr(value)[:40]}")
    if not value.strip():
        raise DataError(f"{where}: field {name!r} is empty")
    return value


def read_squad(source) -> List[QAExample]:
    """SQuAD-format questions (CMRC 2018, DRCD) from a file or its parsed dict, every field checked;
    an error names the file and the JSON path (data[i].paragraphs[j].qas[k].field)."""
    name = source if isinstance(source, (str, os.PathLike)) else "the dataset"
    if isinstance(source, (str, os.PathLike)):
        try:
            source = json.loads(read_text(os.fspath(source)))
        except json.JSONDecodeError as e:
            raise DataError(f"{name}: not valid JSON ({e})") from None

    def need(obj, key, kind, where):
        if not isinstance(obj, dict) or key not in obj:
            raise DataError(f"{name}: {where}: field {key!r} is missing")
        if not isinstance(obj[key], kind):
            raise DataError(f"{name}: {where}.{key}: expected a {kind.__name__}, got {type(obj[key]).__name__}")
        return obj[key]

    out, no_question = [], []
    for a, article in enumerate(need(source, "data", list, "top level")):
        for p, para in enumerate(need(article, "paragraphs", list, f"data[{a}]")):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict):
                raise DataError(f"{name}: {where}: expected an object, got {type(para).__name__}")
            context = text_field(para.get("context"), f"{name}: {where}", "context")
            for q, item in enumerate(need(para, "qas", list, where)):
                qw = f"{where}.qas[{q}]"
                if not isinstance(item, dict):
                    raise DataError(f"{name}: {qw}: expected an object, got {type(item).__name__}")
                if isinstance(item.get("question"), str) and not item["question"].strip():
                    no_question.append(qw)  # CMRC 2018's trial set has two: nothing to ask, skipped
                    continue
                question = text_field(item.get("question"), f"{name}: {qw}", "question")
                if "id" not in item:
                    raise DataError(f"{name}: {qw}: field 'id' is missing")
                answers = item.get("answers", [])
                if not isinstance(answers, list):
                    raise DataError(f"{name}: {qw}.answers: expected a list, got {type(answers).__name__}")
                for k, ans in enumerate(answers):
                    aw = f"{name}: {qw}.answers[{k}]"
                    text_field(ans.get("text") if isinstance(ans, dict) else None, aw, "text")
                    start = ans.get("answer_start")
                    if isinstance(start, bool) or not isinstance(start, int):  # -1 occurs (unplaced answers)
                        raise DataError(f"{aw}: field 'answer_start' must be an integer character offset, "
                                        f"got {start!r}")
                out.append(QAExample(str(item["id"]).strip(), question, context, list(answers)))
    if no_question:
        logger.warning("%s: skipped %d questions whose 'question' field is empty: %s", name, len(no_question),
                       ", ".join(no_question[:5]) + (", ..." if len(no_question) > 5 else ""))
    return out

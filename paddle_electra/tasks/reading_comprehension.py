"""Span extraction (reading-comprehension): windows of `[CLS] question [SEP] context-window [SEP]`
(tasks.qa), answers that are exact slices of the context, EM / F1 of the CMRC 2018 scorer."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import heads
from . import metrics, qa
from .base import Options, QAExample, TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAOptions(Options):
    # the head (None: a fine-tuned folder keeps its own, a new head takes the class's defaults)
    simple: Optional[bool] = None       # the plain start/end head (HF's); else the original's joint head
    beam_size: Optional[int] = None     # the joint head's top-k of starts and ends
    answerable: Optional[bool] = None   # the joint head's answerable classifier
    # windows and answers
    doc_stride: Optional[int] = None    # None: min(128, max_seq_length // 4)
    max_query_length: int = qa.MAX_QUERY_LENGTH
    n_best_size: int = qa.N_BEST_SIZE
    max_answer_length: int = qa.MAX_ANSWER_LENGTH
    answerable_weight: float = 0.5      # of the answerable loss, in training


class ReadingComprehension(TaskSpec):
    """Span extraction over `[CLS] question [SEP] context-window [SEP]` windows (tasks.qa);
    answers are exact slices of the context; EM / F1 of the CMRC 2018 scorer."""
    name, texts, needs_token_types = "reading-comprehension", (2,), True
    Options = QAOptions

    @property
    def shape(self):
        return "[[context, question], ...]"

    model_class = heads.ElectraForQuestionAnswering

    def model_kwargs(self, labels=None, options=None):
        """Only the head settings given: a fine-tuned dir keeps its own otherwise."""
        o = self._options(options)
        given = {"simple": o.simple, "beam_size": o.beam_size, "answerable": o.answerable}
        return {k: v for k, v in given.items() if v is not None}

    def outputs(self, model):
        names = qa.SIMPLE_OUTPUT_NAMES if model.simple else qa.JOINT_OUTPUT_NAMES
        return tuple((n, 1 if n in ("start_logits", "end_logits") else None) for n in names)

    def min_seq_len(self, model):
        return 1 if model.simple else model.beam_size  # the joint head's top-k over positions

    def example(self, texts, options=None):
        return QAExample("", question=texts[1], context=texts[0])

    def encode(self, tokenizer, examples: Sequence[QAExample], max_seq_length: int, labels=None,
               is_training: bool = False, options=None) -> List[qa.QAFeature]:
        """Windows of each (question, context); doc_stride None: min(128, max_seq_length // 4). With
        `is_training`, examples whose answer cannot be placed are skipped (logged)."""
        o = self._options(options)
        stride = o.doc_stride or min(qa.DOC_STRIDE, max(1, max_seq_length // 4))
        feats, skipped = [], 0
        for i, e in enumerate(examples):
            kw = {}
            if is_training:
                if not e.answers:
                    skipped += 1
                    continue
                kw = {"answer_text": e.answers[0]["text"], "answer_start": int(e.answers[0]["answer_start"])}
            try:
                feats.extend(qa.featurize_qa(tokenizer, e.question, e.context, max_seq_length, stride,
                                             o.max_query_length, example_index=i, **kw))
            except qa.AnswerNotFound as err:
                skipped += 1
                logger.info("question %s: %s", e.qid or i, err)
            except ValueError as err:
                raise ValueError(f"example {i}: {err} (raise max_seq_length or shorten the question)") from None
        if skipped:
            logger.warning("%d training questions skipped: their answer is not in the context", skipped)
        return feats

    def collate(self, features):
        return {**super().collate(features),
                "start_positions": np.asarray([f.start_position for f in features], dtype="int64"),
                "end_positions": np.asarray([f.end_position for f in features], dtype="int64")}

    def forward(self, model, batch, options=None):
        outputs = model(*self.inputs(batch), start_positions=batch["start_positions"])
        return outputs, model.loss(outputs, batch["start_positions"], batch["end_positions"],
                                   answerable_weight=self._options(options).answerable_weight)

    def decode(self, examples, features, rows, labels=None, options=None) -> List[Dict]:
        """Per example the best answer: {"answer", "start", "end", "score"}, context[start:end] == answer."""
        o = self._options(options)
        by_example: Dict[int, list] = {}
        for f, r in zip(features, rows):
            by_example.setdefault(f.example_index, []).append((f, r))
        out = []
        for i, e in enumerate(examples):
            pairs = by_example.get(i, [])
            best = qa.postprocess_qa([f for f, _ in pairs], [r for _, r in pairs], e.context,
                                     o.n_best_size, o.max_answer_length)[0]
            out.append({"answer": best["text"], "start": int(best["start"]), "end": int(best["end"]),
                        "score": float(best["probability"])})
        return out

    def score(self, examples, features, rows, labels=None, options=None):
        answers = self.decode(examples, features, rows, options=options)
        preds = {e.qid: a["answer"] for e, a in zip(examples, answers)}
        dataset = {"data": [{"paragraphs": [{"qas": [{"id": e.qid, "answers": e.answers}]} for e in examples]}]}
        res = metrics.cmrc_evaluate(dataset, preds, warn=None)
        return {"em": float(res["EM"]), "f1": float(res["F1"]), "average": float(res["AVERAGE"])}


def windows_needed(data: Sequence[Sequence[str]], max_seq_length: int) -> Tuple[int, int]:
    """(at most how many windows `[[context, question], ...]` need at max_seq_length, the default doc
    stride they are cut with): counted on characters, which are never fewer than the tokens they give."""
    stride = min(qa.DOC_STRIDE, max(1, max_seq_length // 4))
    windows = 0
    for context, question in data:
        room = max(1, max_seq_length - min(len(question), qa.MAX_QUERY_LENGTH) - 3)
        windows += 1 + max(0, -(-(len(context) - room) // stride))
    return windows, stride

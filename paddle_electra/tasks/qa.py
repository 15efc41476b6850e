"""Span-extraction QA: sliding-window features and the n-best answer search, both on character
offsets into the original context, so a predicted answer is an exact slice of the context.

The original (HFL's fork of google-research/electra) splits the context on whitespace and maps
answers with `str.find` on re-tokenized text; a Chinese paragraph has no whitespace, so the whole
paragraph is one "word" and an answer string that occurs twice maps to its first occurrence, in
training labels and in predictions. Here every context token carries its (start, end) character
span (the tokenizer splits CJK characters one per token), labels come from `answer_start`, and
predictions are `context[start:end]` of the chosen tokens. Everything else is the original's:
max query 64 tokens, doc stride 128, the "max context" rule for tokens seen in several windows,
n-best 20, max answer 30 tokens, and out-of-window training answers pointing at [CLS].

Used by the reading-comprehension spec (tasks/reading_comprehension.py): fine-tuning's cmrc2018 / drcd,
the hub module, the pipeline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..batching import softmax

MAX_QUERY_LENGTH = 64
DOC_STRIDE = 128
N_BEST_SIZE = 20
MAX_ANSWER_LENGTH = 30


@dataclass
class QAFeature:
    """One window of one (question, context): `[CLS] question [SEP] context-window [SEP]`, unpadded."""
    example_index: int
    span_index: int
    input_ids: List[int]
    token_type_ids: List[int]
    # per position: (start, end) characters in the context for window tokens, None elsewhere
    offsets: List[Optional[Tuple[int, int]]]
    # per position: this window is the one where the token has the most context on both sides
    is_max_context: List[bool]
    start_position: int = 0  # training labels (0 = [CLS]: no answer in this window)
    end_position: int = 0

    @property
    def attention_mask(self) -> List[int]:
        return [1] * len(self.input_ids)


class AnswerNotFound(ValueError):
    """The gold answer text is not in the context at (or near) its answer_start."""


def locate_answer(context: str, answer_text: str, answer_start: int) -> Tuple[int, int]:
    """Character span [start, end) of the gold answer. Trusts `answer_start` when the text is there;
    else takes the occurrence nearest to it (annotation offsets are sometimes off by a few)."""
    if not answer_text:
        raise AnswerNotFound("empty answer text")
    if context[answer_start:answer_start + len(answer_text)] == answer_text:
        return answer_start, answer_start + len(answer_text)
    hits, i = [], context.find(answer_text)
    while i != -1:
        hits.append(i)
        i = context.find(answer_text, i + 1)
    if not hits:
        raise AnswerNotFound(f"answer {answer_text!r} (answer_start {answer_start}) is not in the context")
    best = min(hits, key=lambda h: abs(h - answer_start))
    return best, best + len(answer_text)


def _tokens_with_offsets(tokenizer, text: str):
    enc = tokenizer(text, return_offsets_mapping=True)
    # drop the [CLS] / [SEP] the tokenizer adds
    return enc["input_ids"][1:-1], [tuple(o) for o in enc["offset_mapping"][1:-1]]


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> List[Tuple[int, int]]:
    """(start, length) windows over the context tokens, as the original: each next window starts
    min(length, doc_stride) later; the last one reaches the end."""
    if max_tokens_for_doc <= 0:
        raise ValueError(f"no room for the context: max_seq_length leaves {max_tokens_for_doc} tokens")
    spans, start = [], 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans or [(0, 0)]


def max_context_flags(spans: List[Tuple[int, int]], span_index: int) -> List[bool]:
    """For each token of window `span_index`: is this the window where min(left, right) context
    (+ 0.01 * window length, to break ties) is largest?"""
    start, length = spans[span_index]
    flags = []
    for pos in range(start, start + length):
        best, best_score = None, None
        for i, (s, n) in enumerate(spans):
            if s <= pos < s + n:
                score = min(pos - s, s + n - 1 - pos) + 0.01 * n
                if best_score is None or score > best_score:
                    best, best_score = i, score
        flags.append(best == span_index)
    return flags


def featurize_qa(tokenizer, question: str, context: str, max_seq_length: int = 512,
                 doc_stride: int = DOC_STRIDE, max_query_length: int = MAX_QUERY_LENGTH,
                 answer_text: Optional[str] = None, answer_start: Optional[int] = None,
                 example_index: int = 0) -> List[QAFeature]:
    """Windows of (question, context). With `answer_text` / `answer_start` (training), each window
    gets the answer's token positions, or 0/0 ([CLS]) when the answer is not wholly inside it.
    Raises AnswerNotFound when the answer cannot be placed in the context."""
    q_ids = _tokens_with_offsets(tokenizer, question)[0][:max_query_length]
    c_ids, c_offsets = _tokens_with_offsets(tokenizer, context)
    tok_start = tok_end = None
    if answer_text is not None:
        a_start, a_end = locate_answer(context, answer_text, answer_start or 0)
        inside = [i for i, (s, e) in enumerate(c_offsets) if s < a_end and e > a_start]
        if not inside:
            raise AnswerNotFound(f"answer {answer_text!r} covers no token of the context")
        tok_start, tok_end = inside[0], inside[-1]
    spans = doc_spans(len(c_ids), max_seq_length - len(q_ids) - 3, doc_stride)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    head = [cls_id] + q_ids + [sep_id]
    features = []
    for si, (start, length) in enumerate(spans):
        ids = head + c_ids[start:start + length] + [sep_id]
        types = [0] * len(head) + [1] * (length + 1)
        offsets = [None] * len(head) + c_offsets[start:start + length] + [None]
        flags = [False] * len(head) + max_context_flags(spans, si) + [False]
        sp = ep = 0
        if tok_start is not None and start <= tok_start and tok_end < start + length:
            sp, ep = tok_start - start + len(head), tok_end - start + len(head)
        features.append(QAFeature(example_index, si, ids, types, offsets, flags, sp, ep))
    return features


def _candidates(feature: QAFeature, out: Dict[str, np.ndarray], n_best_size: int):
    """(start, end, start_score, end_score) pairs from one window's head outputs: the joint head's
    beam (start_top_* and end_top_*), or the n-best starts x n-best ends of plain logits."""
    if "start_top_index" in out:
        st_i, st_lp = np.asarray(out["start_top_index"]), np.asarray(out["start_top_log_probs"])
        en_i, en_lp = np.asarray(out["end_top_index"]), np.asarray(out["end_top_log_probs"])
        for i in range(len(st_i)):
            for j in range(en_i.shape[1]):
                yield int(st_i[i]), int(en_i[i, j]), float(st_lp[i]), float(en_lp[i, j])
    else:
        sl, el = np.asarray(out["start_logits"]), np.asarray(out["end_logits"])
        n = len(feature.input_ids)
        starts = np.argsort(-sl[:n], kind="stable")[:n_best_size]
        ends = np.argsort(-el[:n], kind="stable")[:n_best_size]
        for s in starts:
            for e in ends:
                yield int(s), int(e), float(sl[s]), float(el[e])


def postprocess_qa(features: Sequence[QAFeature], outputs: Sequence[Dict[str, np.ndarray]], context: str,
                   n_best_size: int = N_BEST_SIZE, max_answer_length: int = MAX_ANSWER_LENGTH) -> List[Dict]:
    """The n-best answers of one example, best first: dicts with `text` (= context[start:end]),
    `start`, `end` (character offsets), `probability`, `start_logit`, `end_logit`.

    `outputs[i]` holds the head outputs of `features[i]` as numpy arrays (one example's rows):
    start_top_log_probs/start_top_index/end_top_log_probs/end_top_index from the joint head, or
    start_logits/end_logits from the simple head. Spans that start at [CLS], leave the context,
    start in a window that is not the token's max-context one, end before they start or are longer
    than `max_answer_length` tokens are dropped, as the original does. No valid span: one entry
    with text "" and start = end = -1."""
    prelim = []
    for feature, out in zip(features, outputs):
        n = len(feature.input_ids)
        for s, e, ss, es in _candidates(feature, out, n_best_size):
            if s == 0 or s >= n or e >= n or e < s or e - s + 1 > max_answer_length:
                continue
            if feature.offsets[s] is None or feature.offsets[e] is None or not feature.is_max_context[s]:
                continue
            prelim.append((ss + es, ss, es, feature.offsets[s][0], feature.offsets[e][1]))
    prelim.sort(key=lambda x: x[0], reverse=True)  # stable: ties keep window / beam order
    nbest, seen = [], set()
    for score, ss, es, cs, ce in prelim:
        if len(nbest) >= n_best_size:
            break
        text = context[cs:ce]
        if text in seen:
            continue
        seen.add(text)
        nbest.append({"text": text, "start": cs, "end": ce, "start_logit": ss, "end_logit": es})
    if not nbest:
        return [{"text": "", "start": -1, "end": -1, "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}]
    for entry, p in zip(nbest, softmax([x["start_logit"] + x["end_logit"] for x in nbest], dtype="float64")):
        entry["probability"] = float(p)
    return nbest


JOINT_OUTPUT_NAMES = ("start_logits", "start_top_log_probs", "start_top_index", "end_top_log_probs",
                      "end_top_index", "answerable_logit")
SIMPLE_OUTPUT_NAMES = ("start_logits", "end_logits")

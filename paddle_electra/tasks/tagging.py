"""Tagging (token-cls): a label per unit (character or word) of a text, read in windows of
half-overlapping word pieces; entity (chunk) F1; `entities` turns unit labels into spans."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from .. import heads
from ..batching import pad, softmax
from . import metrics, qa
from .base import IGNORE_INDEX, Options, TaggingExample, TaggingFeature, TaskSpec


@dataclass(frozen=True)
class TaggingOptions(Options):
    split_char: str = "\002"          # a text holding it is words split by it, else one unit per character
    suffix: bool = False              # labels as "PER-B" (else "B-PER")
    ignore_label: int = IGNORE_INDEX  # the training label of positions that do not count (a PaddleHub dataset's)


class TokenClassification(TaskSpec):
    """logits [B, S, num_labels]; each unit (character or word) takes the label of its first word
    piece; texts longer than max_seq_length are read in windows of half-overlapping pieces, each piece
    labelled from the window where it has the most context; entity (chunk) F1."""
    name, texts = "token-cls", (1,)
    Options = TaggingOptions
    labelled = True

    model_class = heads.ElectraForTokenClassification

    def outputs(self, model):
        return (("logits", 1),)

    def example(self, texts, options=None):
        text, split_char = texts[0], self._options(options).split_char
        return TaggingExample(text.split(split_char)) if split_char in text else TaggingExample(None, text=text)

    @staticmethod
    def _units(tokenizer, example: TaggingExample, cache: Dict[str, List[int]]):
        """(word pieces, first piece per unit or -1, continues per unit)."""
        if example.words is not None:
            ids, first = [], []
            for w in example.words:
                p = cache[w]
                first.append(len(ids) if p else -1)
                ids.extend(p)
            return ids, first, [False] * len(example.words)
        enc = tokenizer(example.text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][1:-1], enc["offset_mapping"][1:-1]
        first, cont = [-1] * len(example.text), [False] * len(example.text)
        for t, (s, e) in enumerate(offsets):
            for c in range(s, e):
                if first[c] == -1:
                    first[c], cont[c] = t, c > s
        return ids, first, cont

    def encode(self, tokenizer, examples: Sequence[TaggingExample], max_seq_length: int,
               labels: Optional[Sequence[str]] = None, is_training: bool = False,
               options=None) -> List[TaggingFeature]:
        words = sorted({w for e in examples if e.words is not None for w in e.words})
        cache = dict(zip(words, (p[1:-1] for p in tokenizer(words)["input_ids"]))) if words else {}
        tag_id = {t: i for i, t in enumerate(labels or ())}
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        room = max_seq_length - 2
        feats = []
        for ei, e in enumerate(examples):
            ids, first, cont = self._units(tokenizer, e, cache)
            piece_labels = None
            if e.tags is not None:
                piece_labels = [IGNORE_INDEX] * len(ids)
                for u, t in zip(first, e.tags):
                    if u >= 0:
                        piece_labels[u] = tag_id[t]
            spans = qa.doc_spans(len(ids), room, max(1, room // 2)) if ids else []
            for si, (s, n) in enumerate(spans):
                feats.append(TaggingFeature(
                    [cls_id] + ids[s:s + n] + [sep_id], [0] * (n + 2), ei, s, qa.max_context_flags(spans, si),
                    first, cont,
                    None if piece_labels is None else [IGNORE_INDEX] + piece_labels[s:s + n] + [IGNORE_INDEX]))
        return feats

    def collate(self, features):
        return {**super().collate(features), "labels": pad([f.labels for f in features], IGNORE_INDEX)}

    @staticmethod
    def training_labels(logits, batch, ignore_label: int = IGNORE_INDEX):
        """[B, S] int64 labels, `ignore_label` (a PaddleHub dataset's padding label) read as IGNORE_INDEX."""
        labels = batch["labels"].reshape(logits.shape[:2]).astype("int64")
        if ignore_label != IGNORE_INDEX:
            labels = paddle.where(labels == ignore_label, paddle.full_like(labels, IGNORE_INDEX), labels)
        return labels

    def forward(self, model, batch, options=None):
        logits = model(*self.inputs(batch))
        return logits, model.loss(logits, self.training_labels(logits, batch, self._options(options).ignore_label))

    @staticmethod
    def inside_label(label: str, suffix: bool = False) -> str:
        if suffix:
            return label[:-2] + "-I" if label.endswith("-B") else label
        return "I-" + label[2:] if label.startswith("B-") else label

    def decode(self, examples, features, rows, labels=None, options=None):
        """Per example (a label per unit, its probabilities); a unit without a word piece (a space)
        gets "O" (None when the label set has no "O") and no probabilities."""
        suffix = self._options(options).suffix
        piece_probs: Dict[int, Dict[int, np.ndarray]] = {}
        units: Dict[int, TaggingFeature] = {}
        for f, r in zip(features, rows):
            units[f.example_index] = f
            mine = piece_probs.setdefault(f.example_index, {})
            p = softmax(r["logits"][1:len(f.is_max_context) + 1])
            for k, best in enumerate(f.is_max_context):
                if best:
                    mine[f.start + k] = p[k]
        no_entity = "O" if "O" in labels else None
        out = []
        for ei, e in enumerate(examples):
            f = units.get(ei)
            if f is None:  # no word piece at all
                out.append(([no_entity] * e.num_units, [None] * e.num_units))
                continue
            lab, pr = [], []
            for u, c in zip(f.first, f.continues):
                if u < 0:
                    lab.append(no_entity)
                    pr.append(None)
                    continue
                p = piece_probs[ei][u]
                name = labels[int(np.argmax(p))]
                lab.append(self.inside_label(name, suffix) if c else name)
                pr.append(p.tolist())
            out.append((lab, pr))
        return out

    def score(self, examples, features, rows, labels=None, options=None):
        pred = [lab for lab, _ in self.decode(examples, features, rows, labels)]
        return metrics.chunk_f1([e.tags for e in examples], pred)


def entities(text: str, unit_labels: Sequence[Optional[str]], suffix: bool = False,
             spans: Optional[Sequence[Tuple[int, int]]] = None) -> List[Dict]:
    """The entities of token-cls labels (TokenClassification.decode's, one per unit: a character of
    `text`, or the word at each of `spans`, (start, end) in `text`): [{"text", "label", "start", "end"}]
    with text[start:end] == the entity's text (seqeval's chunking, BIO / BIOES; `suffix`: "PER-B")."""
    from seqeval.metrics.sequence_labeling import get_entities
    spans = [(i, i + 1) for i in range(len(text))] if spans is None else list(spans)
    if len(unit_labels) != len(spans):
        raise ValueError(f"{len(unit_labels)} labels for {len(spans)} units of the text")
    tags = [t or "O" for t in unit_labels]
    out = []
    for label, s, e in get_entities(tags, suffix=suffix):
        start, end = spans[s][0], spans[e][1]
        out.append({"text": text[start:end], "label": label, "start": start, "end": end})
    return out

"""Classification over the [CLS] state: seq-cls, text-matching (pairs only) and text-regression
(the worked example of adding a task kind, docs/design.md)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle.nn.functional as F

from .. import heads
from ..batching import log_softmax, softmax
from . import metrics
from .base import Options, TaskSpec


@dataclass(frozen=True)
class ClassificationOptions(Options):
    """None: labels are the model's, nothing else to choose."""


class SequenceClassification(TaskSpec):
    """logits [B, num_labels] from the [CLS] state; mean cross entropy; accuracy."""
    name = "seq-cls"
    Options = ClassificationOptions
    labelled = True

    model_class = heads.ElectraForSequenceClassification

    def outputs(self, model):
        return (("logits", None),)

    def label_value(self, label, labels):
        if label is None:
            return -1
        return list(labels).index(label)

    def collate(self, features):
        return {**super().collate(features), "labels": np.asarray([f.label for f in features], dtype="int64")}

    def forward(self, model, batch, options=None):
        logits = model(*self.inputs(batch))
        return logits, model.loss(logits, batch["labels"])

    def decode(self, examples, features, rows, labels=None, options=None):
        """Per example (label, probabilities)."""
        out = []
        for r in rows:
            p = softmax(r["logits"])
            out.append((labels[int(np.argmax(p))], p.tolist()))
        return out

    def score(self, examples, features, rows, labels=None, options=None):
        logits = np.stack([r["logits"] for r in rows])
        gold = np.asarray([f.label for f in features])
        logp = log_softmax(logits)  # the original's eval loss: mean cross entropy
        return {"accuracy": metrics.accuracy(logits.argmax(-1), gold),
                "loss": float(-logp[np.arange(len(gold)), gold].mean())}


class TextMatching(SequenceClassification):
    """seq-cls of text pairs `[CLS] a [SEP] b [SEP]` (PaddleHub's text-matching)."""
    name, texts = "text-matching", (2,)


class TextRegression(SequenceClassification):
    """A score per text (pair), e.g. sentence similarity (STS-B): one output of the [CLS] classifier,
    mean squared error; Pearson and Spearman correlation (percent), as GLUE reports STS-B."""
    name = "text-regression"
    labelled = False

    def model_kwargs(self, labels=None, options=None):
        return {"num_labels": 1}

    def label_value(self, label, labels):
        return float("nan") if label is None else float(label)

    def collate(self, features):
        return {**TaskSpec.collate(self, features),
                "labels": np.asarray([f.label for f in features], dtype="float32")}

    def forward(self, model, batch, options=None):
        logits = model(*self.inputs(batch))
        return logits, F.mse_loss(logits[:, 0], batch["labels"].reshape([-1]).astype(logits.dtype))

    def decode(self, examples, features, rows, labels=None, options=None):
        """Per example (score, None)."""
        return [(float(r["logits"][0]), None) for r in rows]

    def score(self, examples, features, rows, labels=None, options=None):
        pred = np.asarray([r["logits"][0] for r in rows], dtype="float64")
        gold = np.asarray([f.label for f in features], dtype="float64")
        return {**metrics.correlations(pred, gold), "mse": float(np.mean((pred - gold) ** 2))}

"""Task models: ElectraModel (`electra`) + the original's fine-tuning heads.

- ElectraForSequenceClassification: [CLS] state -> dropout -> dense(num_labels)  (head `classifier`);
  `pooling="mean"`: the mean of the real tokens' states instead of [CLS] (not in the original)
- ElectraForTokenClassification: every token -> dropout -> dense(num_labels)    (head `classifier`)
- ElectraForQuestionAnswering: the original's joint span head (head `qa`), or with `simple=True`
  plain start/end logits as HF / PaddleNLP do.

`forward` returns tensors only, so a model can be exported to a static graph. Label maps are kept
HF style (`id2label`, `label2id`, `num_labels`) in config.json, plus `label_map.json` ({label: id}).

`X.from_pretrained(dir)` on a fine-tuned dir of the same class loads everything strictly; on a
discriminator / pretraining / backbone dir (or a dir fine-tuned for another head) it takes the
backbone and initialises a new head; `model.load_report.newly_initialized` names the new tensors.

The QA featurizer (sliding windows, character offsets) and the n-best answer search live in
paddle_electra.tasks.qa; which task uses which head, and how, in the task specs of
paddle_electra.tasks.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .io import LABEL_MAP_NAME
from .modeling_utils import PretrainedMixin
from .config import ConfigError, ElectraConfig
from .modeling import ElectraModel

# the mask the original adds to logits outside the answer segment: 1000 * (mask - 1)
_MASK_PENALTY = 1000.0


def _head_linear(n_in, n_out):
    # The original builds its fine-tuning heads with tf.layers.dense defaults: Glorot-uniform
    # kernels and zero biases (not the truncated normal of the backbone).
    return nn.Linear(n_in, n_out, weight_attr=paddle.ParamAttr(initializer=nn.initializer.XavierUniform()),
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))


def normalize_label_map(num_labels: Optional[int] = None,
                        id2label: Optional[Union[Dict, Sequence[str]]] = None,
                        label2id: Optional[Dict[str, int]] = None, default_num_labels: int = 2) -> List[str]:
    """One list of label names (index = id) from any of the HF-style spellings; checks they agree."""
    labels = None
    if id2label is not None:
        if isinstance(id2label, dict):
            try:
                items = sorted((int(k), str(v)) for k, v in id2label.items())
            except ValueError:
                raise ConfigError(f"id2label keys must be integers, got {sorted(id2label)}") from None
            if [i for i, _ in items] != list(range(len(items))):
                raise ConfigError(f"id2label ids must be 0..{len(items) - 1}, got {[i for i, _ in items]}")
            labels = [v for _, v in items]
        else:
            labels = [str(x) for x in id2label]
    if label2id is not None:
        from_l2i = [None] * len(label2id)
        for name, i in label2id.items():
            if not isinstance(i, int) or not 0 <= i < len(label2id) or from_l2i[i] is not None:
                raise ConfigError(f"label2id must map labels to distinct ids 0..{len(label2id) - 1}: {label2id}")
            from_l2i[i] = str(name)
        if labels is not None and labels != from_l2i:
            raise ConfigError(f"id2label {labels} and label2id {label2id} disagree")
        labels = from_l2i
    if labels is None:
        n = default_num_labels if num_labels is None else int(num_labels)
        labels = [f"LABEL_{i}" for i in range(n)]
    if num_labels is not None and int(num_labels) != len(labels):
        raise ConfigError(f"num_labels={num_labels} but the label map has {len(labels)} labels: {labels}")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"label names repeat: {labels}")
    if not labels:
        raise ConfigError("a classifier needs at least one label")
    return labels


class _TaskModel(PretrainedMixin, nn.Layer):
    """What every task model shares: the backbone `electra`, loading rules, saved fields."""

    # config.json field -> constructor argument, for the head settings this class saves
    _saved_fields: Dict[str, str] = {}
    _saved_as_one = False

    @classmethod
    def _build(cls, path: str, config: ElectraConfig, **kwargs):
        # a dir fine-tuned for this very class gives its saved head settings; the caller's win
        same = config.extra.get("architectures") == [cls.__name__]
        given = {k: v for k, v in kwargs.items() if v is not None}
        saved = {arg: config.extra[key] for key, arg in cls._saved_fields.items() if same and key in config.extra}
        if cls._saved_as_one and set(given) & set(saved):  # a label map given replaces the saved one whole
            saved = {}
        model = cls(config, **{**saved, **given})
        model._source_architectures = config.extra.get("architectures")
        model._source_path = path
        return model

    def _head_keys(self) -> List[str]:
        return [k for k in self.state_dict() if not k.startswith("electra.")]

    def _adapt_weights(self, weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if getattr(self, "_source_architectures", None) == [type(self).__name__]:
            return weights  # a fine-tuned dir of this class: strict, every tensor must be there
        # a backbone (ElectraModel dir: no prefix) or a model with other heads: take the backbone
        if not any(k.startswith("electra.") for k in weights):
            weights = {"electra." + k: v for k, v in weights.items()}
        out = {k: v for k, v in weights.items() if k.startswith("electra.")}
        # None: the new head keeps its initialisation (from_pretrained lists it in load_report)
        return {**{k: None for k in self.state_dict() if k not in out}, **out}


class _ClassifierModel(_TaskModel):
    _saved_fields = {"id2label": "id2label", "label2id": "label2id", "num_labels": "num_labels"}
    _saved_as_one = True

    def __init__(self, config: ElectraConfig, num_labels: Optional[int] = None,
                 id2label: Optional[Union[Dict, Sequence[str]]] = None, label2id: Optional[Dict] = None,
                 classifier_dropout: Optional[float] = None):
        super().__init__()
        self.config = config
        self.labels = normalize_label_map(num_labels, id2label, label2id)
        self.num_labels = len(self.labels)
        self.electra = ElectraModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout)
        self.classifier = _head_linear(config.hidden_size, self.num_labels)

    @property
    def id2label(self) -> Dict[int, str]:
        return dict(enumerate(self.labels))

    @property
    def label2id(self) -> Dict[str, int]:
        return {name: i for i, name in enumerate(self.labels)}

    def _config_dict_extra(self) -> Dict:
        return {**super()._config_dict_extra(), "num_labels": self.num_labels,
                "id2label": {str(i): n for i, n in enumerate(self.labels)}, "label2id": self.label2id}

    def _save_extra(self, path: str):
        with open(os.path.join(path, LABEL_MAP_NAME), "w", encoding="utf-8") as f:
            json.dump(self.label2id, f, ensure_ascii=False, indent=2)
            f.write("\n")


class HFClassificationHead(nn.Layer):
    """HF's ElectraClassificationHead after its first dropout: dense(H->H) -> gelu -> dropout ->
    out_proj(H->num_labels), names as HF's (`classifier.dense`, `classifier.out_proj`)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dense = _head_linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = _head_linear(hidden_size, num_labels)

    def forward(self, x):
        return self.out_proj(self.dropout(F.gelu(self.dense(x), approximate=False)))


class ElectraForSequenceClassification(_ClassifierModel):
    """logits [B, num_labels] from the [CLS] state (the original has no pooler). `hf_head=True`:
    HF's head instead of the original's single dense (for models fine-tuned with transformers).
    `pooling="mean"`: the mean of the states of the tokens `attention_mask` keeps ([CLS] and [SEP]
    included) instead of the [CLS] state; kept in config.json as `classifier_pooling`."""

    POOLINGS = ("cls", "mean")

    def __init__(self, config: ElectraConfig, *args, hf_head: bool = False, pooling: str = "cls", **kwargs):
        super().__init__(config, *args, **kwargs)
        if pooling not in self.POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(self.POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.hf_head = bool(hf_head)
        if self.hf_head:
            self.classifier = HFClassificationHead(config.hidden_size, self.num_labels, self.dropout.p)

    @classmethod
    def _build(cls, path: str, config: ElectraConfig, **kwargs):
        fine_tuned = config.extra.get("architectures") == [cls.__name__]
        if kwargs.get("hf_head") is None and fine_tuned:
            kwargs["hf_head"] = config.extra.get("classifier_head") == "hf"
        if kwargs.get("pooling") is None:
            kwargs["pooling"] = config.extra.get("classifier_pooling", "cls") if fine_tuned else "cls"
        return super()._build(path, config, **kwargs)

    def _config_dict_extra(self) -> Dict:
        return {**super()._config_dict_extra(), **({"classifier_head": "hf"} if self.hf_head else {}),
                **({"classifier_pooling": self.pooling} if self.pooling != "cls" else {})}

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None):
        hidden = self.electra(input_ids, token_type_ids, attention_mask, position_ids)
        if self.pooling == "cls":
            return self.classifier(self.dropout(hidden[:, 0]))
        keep = (paddle.ones_like(input_ids) if attention_mask is None else attention_mask).astype(hidden.dtype)
        pooled = (hidden * keep.unsqueeze(-1)).sum(axis=1) / keep.sum(axis=1, keepdim=True).clip(min=1.0)
        return self.classifier(self.dropout(pooled))

    @staticmethod
    def loss(logits, labels):
        """Mean cross entropy over the batch, as the original."""
        return F.cross_entropy(logits, labels.reshape([-1]).astype("int64"), reduction="mean")


class ElectraForTokenClassification(_ClassifierModel):
    """logits [B, S, num_labels], one row per token."""

    ignore_index = -100  # label of [CLS], [SEP], padding and non-first word pieces

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None):
        hidden = self.electra(input_ids, token_type_ids, attention_mask, position_ids)
        return self.classifier(self.dropout(hidden))

    @classmethod
    def loss(cls, logits, labels):
        """Cross entropy summed over the labelled tokens of each example, then the batch mean
        (the original tagging loss); tokens labelled -100 do not count."""
        labels = labels.astype("int64")
        mask = (labels != cls.ignore_index).astype(logits.dtype)
        safe = paddle.where(labels == cls.ignore_index, paddle.zeros_like(labels), labels)
        ce = F.cross_entropy(logits, safe.unsqueeze(-1), reduction="none").squeeze(-1)
        return (ce * mask).sum(axis=1).mean()


class QAHead(nn.Layer):
    """The original's joint span head (scope task_specific/<task>/ in TF: `dense` = start_logits,
    `qa_hidden`, `dense_1` = qa_logits, `dense_2` = answerable_hidden, `dense_3` = answerable_logits).

    start = dense(H->1). The end is conditioned on the start: dense(concat(h_start, h_j) -> 512, gelu)
    -> dense(1); in training h_start is the gold start, at inference each of the top `beam_size`
    starts. The answerable branch reads [CLS] and the start-probability-weighted state."""

    def __init__(self, hidden_size: int, beam_size: int = 20, answerable: bool = True):
        super().__init__()
        self.hidden_size, self.beam_size, self.answerable = hidden_size, beam_size, answerable
        self.start_logits = _head_linear(hidden_size, 1)
        self.qa_hidden = _head_linear(2 * hidden_size, 512)
        self.qa_logits = _head_linear(512, 1)
        if answerable:
            self.answerable_hidden = _head_linear(2 * hidden_size, 512)
            self.answerable_logits = _head_linear(512, 1)

    def _end_logits(self, start_feats, hidden, penalty):
        """start_feats [B, K, H], hidden [B, S, H] -> end logits [B, K, S].
        dense(concat(a, b)) = a W[:H] + b W[H:] + bias: the same numbers as the original's concat,
        without materialising [B, K, S, 2H]; one start at a time keeps the peak at [B, S, 512]
        (all 20 at once would be 670 MB for 32 windows of 512 tokens)."""
        W, b = self.qa_hidden.weight, self.qa_hidden.bias
        H = self.hidden_size
        ends = paddle.matmul(hidden, W[H:]) + b                     # [B, S, 512]
        starts = paddle.matmul(start_feats, W[:H])                  # [B, K, 512]
        logits = []
        for k in range(start_feats.shape[1]):                       # K is a constant (the beam)
            x = F.gelu(ends + starts[:, k:k + 1], approximate=False)
            logits.append(self.qa_logits(x).squeeze(-1))
        return paddle.stack(logits, axis=1) + penalty.unsqueeze(1)

    def _answerable(self, hidden, start_logits):
        if not self.answerable:
            return paddle.zeros_like(start_logits[:, 0])
        start_p = F.softmax(start_logits, axis=-1)
        feat = paddle.concat([hidden[:, 0], (start_p.unsqueeze(-1) * hidden).sum(axis=1)], axis=-1)
        return self.answerable_logits(F.gelu(self.answerable_hidden(feat), approximate=False)).squeeze(-1)

    def forward(self, hidden, answer_mask, start_positions=None):
        penalty = _MASK_PENALTY * (answer_mask - 1.0)
        start_logits = self.start_logits(hidden).squeeze(-1) + penalty
        answerable_logit = self._answerable(hidden, start_logits)
        if start_positions is not None:  # training: condition the end on the gold start
            idx = start_positions.reshape([-1, 1, 1]).astype("int64")
            start_feats = paddle.take_along_axis(hidden, idx, axis=1)
            end_logits = self._end_logits(start_feats, hidden, penalty).squeeze(1)
            return start_logits, end_logits, answerable_logit
        # a fixed beam: exported graphs need a constant k (sequences shorter than it are an error)
        k = min(self.beam_size, hidden.shape[1]) if paddle.in_dynamic_mode() else self.beam_size
        start_top_log_probs, start_top_index = paddle.topk(F.log_softmax(start_logits, axis=-1), k=k)
        start_feats = paddle.take_along_axis(hidden, start_top_index.unsqueeze(-1), axis=1)
        end_log_probs = F.log_softmax(self._end_logits(start_feats, hidden, penalty), axis=-1)
        end_top_log_probs, end_top_index = paddle.topk(end_log_probs, k=k)
        return start_logits, start_top_log_probs, start_top_index, end_top_log_probs, end_top_index, answerable_logit


class SimpleQAHead(nn.Layer):
    """HF / PaddleNLP's span head: dense(H->2) -> start, end logits (no masking)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = _head_linear(hidden_size, 2)

    def forward(self, hidden):
        logits = self.qa_outputs(hidden)
        return logits[:, :, 0], logits[:, :, 1]


def answer_mask_from(token_type_ids, attention_mask, input_ids):
    """1 where an answer may start or end: the second segment ([CLS] too, as the original); all
    real tokens when no segment ids are given."""
    if attention_mask is None:
        attention_mask = paddle.ones_like(input_ids)
    mask = attention_mask.astype("float32")
    if token_type_ids is not None:
        mask = mask * token_type_ids.astype("float32")
    first = paddle.zeros_like(mask[:, :1]) + 1.0
    return paddle.concat([first, mask[:, 1:]], axis=1)


class ElectraForQuestionAnswering(_TaskModel):
    """Span extraction.

    Joint head (default, the original's):
      forward(input_ids, token_type_ids, attention_mask, position_ids) at inference returns
        (start_logits [B, S], start_top_log_probs [B, K], start_top_index [B, K],
         end_top_log_probs [B, K, K], end_top_index [B, K, K], answerable_logit [B]),  K = beam_size;
        end_top_*[b, i] are the best ends for the start start_top_index[b, i].
      forward(..., start_positions=[B]) (training) returns (start_logits, end_logits, answerable_logit),
        the end conditioned on the gold start.
    simple=True: forward returns (start_logits [B, S], end_logits [B, S]) in both modes.
    """

    _saved_fields = {"qa_simple": "simple", "qa_beam_size": "beam_size", "qa_answerable": "answerable"}

    def __init__(self, config: ElectraConfig, simple: bool = False, beam_size: int = 20, answerable: bool = True):
        super().__init__()
        self.simple, self.beam_size, self.answerable = bool(simple), int(beam_size), bool(answerable)
        if self.beam_size < 1:
            raise ConfigError(f"beam_size must be >= 1, got {self.beam_size}")
        self.config = config
        self.electra = ElectraModel(config)
        self.qa = SimpleQAHead(config.hidden_size) if self.simple else \
            QAHead(config.hidden_size, self.beam_size, self.answerable)

    def _config_dict_extra(self) -> Dict:
        return {**super()._config_dict_extra(), "qa_simple": self.simple, "qa_beam_size": self.beam_size,
                "qa_answerable": self.answerable}

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None,
                start_positions=None):
        hidden = self.electra(input_ids, token_type_ids, attention_mask, position_ids)
        if self.simple:
            return self.qa(hidden)
        return self.qa(hidden, answer_mask_from(token_type_ids, attention_mask, input_ids), start_positions)

    def loss(self, outputs, start_positions, end_positions, is_impossible=None, answerable_weight: float = 0.5):
        """The original's loss, batch mean of (CE(start) + CE(end)) / 2 [+ weight * sigmoid CE of the
        answerable logit against is_impossible (all 0 for CMRC 2018 / DRCD)]. `outputs` is what the
        training-mode forward returned."""
        start_logits, end_logits = outputs[0], outputs[1]
        sp = start_positions.reshape([-1, 1]).astype("int64")
        ep = end_positions.reshape([-1, 1]).astype("int64")
        loss = (F.cross_entropy(start_logits, sp, reduction="none")
                + F.cross_entropy(end_logits, ep, reduction="none")).reshape([-1]) / 2.0
        if not self.simple and self.answerable:
            if is_impossible is None:
                is_impossible = paddle.zeros_like(outputs[2])
            loss = loss + answerable_weight * F.binary_cross_entropy_with_logits(
                outputs[2], is_impossible.astype(outputs[2].dtype).reshape([-1]), reduction="none")
        return loss.mean()

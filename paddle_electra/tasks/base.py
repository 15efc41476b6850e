"""The task registry: one spec per task kind, through which fine-tuning, ElectraPredictor and the
PaddleHub module all dispatch (the idea of google-research/electra's finetune/task.py, where a
Task owns its featurizer, prediction module and scorer).

A spec holds, in one place:
- `model_class` and `model_kwargs` (the head and its settings), `outputs(model)` (output names
  and which axis follows the input length), `min_seq_len(model)`;
- `example(texts)`: an example from PaddleHub's `[text_a(, text_b)]`; `encode(tokenizer, examples,
  max_seq_len, ...)`: features (sliding windows included), labelled when the examples are;
- `collate(features)`: a training batch; `forward(model, batch)` -> (outputs, loss);
- `decode(examples, features, rows)`: one prediction per example from the per-feature output rows
  (`{name: array}`, see batching.run_bucketed); `score(...)`: the metrics; `batch_metrics`: the
  per-batch numbers hub.Trainer logs.

Tasks: None (embeddings), "discriminator", "generator" (predictor only), "seq-cls",
"text-matching", "text-regression", "token-cls", "reading-comprehension". A dataset task of
fine-tuning (paddle_electra.finetuning.tasks) is a reader bound to one of these.
Adding a task kind: subclass a spec and `register` it (see TextRegression and docs/design.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from . import heads, modeling
from .batching import log_softmax, pad, run_bucketed, softmax
from .finetuning import metrics, qa

logger = logging.getLogger(__name__)

IGNORE_INDEX = heads.ElectraForTokenClassification.ignore_index  # label of positions that do not count


# --- examples and features -------------------------------------------------------------------------
@dataclass
class ClassificationExample:
    text_a: str
    text_b: Optional[str] = None
    label: Any = None  # a label name (classification) or a number (regression); None: unlabelled

    @property
    def texts(self) -> Tuple[str, ...]:
        return (self.text_a,) if self.text_b is None else (self.text_a, self.text_b)


@dataclass
class TaggingExample:
    """Units to label: `words` (each tokenized on its own), or the characters of `text` (tokenized
    together; a character inside a word piece another one started continues its label)."""
    words: Optional[List[str]]
    tags: Optional[List[str]] = None
    text: Optional[str] = None

    @property
    def num_units(self) -> int:
        return len(self.words) if self.words is not None else len(self.text)


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: List[Dict] = field(default_factory=list)  # [{"text", "answer_start"}]


@dataclass
class SequenceFeature:
    input_ids: List[int]
    token_type_ids: List[int]
    example_index: int
    label: Any = None
    truncated: bool = False


@dataclass
class TaggingFeature:
    """One window `[CLS] pieces[start:start + n] [SEP]` of one example's word pieces."""
    input_ids: List[int]
    token_type_ids: List[int]
    example_index: int
    start: int
    is_max_context: List[bool]          # per window piece: its best window (the original's rule)
    first: List[int]                    # per unit of the example: index of its first piece, -1 if none
    continues: List[bool]               # per unit: it continues a piece an earlier unit started
    labels: Optional[List[int]] = None  # per position; IGNORE_INDEX where nothing is scored


def _texts_shape(n: Tuple[int, ...]) -> str:
    return {(1, 2): "[[text], ...] or [[text_a, text_b], ...]", (1,): "[[text], ...]",
            (2,): "[[text_a, text_b], ...]"}[n]


# --- the specs -------------------------------------------------------------------------------------
class TaskSpec:
    """Base: the backbone's sequence output, inputs as `[CLS] a [SEP] (b [SEP])`."""

    name: Optional[str] = None
    aliases: Tuple[str, ...] = ()
    hub: bool = True                 # a task of the PaddleHub module
    texts: Tuple[int, ...] = (1, 2)  # texts per example
    labelled: bool = False           # takes a label map (label_map / id2label)
    needs_token_types: bool = False  # the head reads segment ids (answers are searched in segment 1)
    hub_fields: Tuple[Tuple[str, ...], ...] = ()  # PaddleHub's positional training batch layout(s)
    prefers_dygraph: bool = False    # evaluation is faster in dygraph than on Paddle Inference

    @property
    def shape(self) -> str:
        return _texts_shape(self.texts)

    model_class = modeling.ElectraModel

    def model_kwargs(self, labels: Optional[Sequence[str]] = None, **settings) -> Dict:
        return {"id2label": list(labels)} if self.labelled and labels else {}

    def outputs(self, model) -> Tuple[Tuple[str, Optional[int]], ...]:
        """(name, the axis that follows the input length or None) of each model output."""
        return (("sequence_output", 1),)

    def output_names(self, model) -> Tuple[str, ...]:
        return tuple(n for n, _ in self.outputs(model))

    def seq_axes(self, model) -> List[Optional[int]]:
        return [a for _, a in self.outputs(model)]

    def min_seq_len(self, model) -> int:
        return 1

    # --- inputs ---
    def example(self, texts: Sequence[str], **options):
        return ClassificationExample(*texts)

    def encode(self, tokenizer, examples: Sequence[ClassificationExample], max_seq_len: int,
               labels: Optional[Sequence[str]] = None, **options) -> List[SequenceFeature]:
        """`[CLS] a [SEP] (b [SEP])`; longer than max_seq_len: the tokenizer's truncation (the
        original's: the longer text loses its last token, the second on ties), `truncated` set."""
        feats: List[Optional[SequenceFeature]] = [None] * len(examples)
        for n in (1, 2):
            group = [i for i, ex in enumerate(examples) if len(ex.texts) == n]
            if not group:
                continue
            a = [examples[i].text_a for i in group]
            b = [examples[i].text_b for i in group] if n == 2 else None
            enc = tokenizer(a, b)
            ids, types = enc["input_ids"], enc["token_type_ids"]
            long = [j for j, x in enumerate(ids) if len(x) > max_seq_len]
            if long:
                cut = tokenizer([a[j] for j in long], [b[j] for j in long] if b else None,
                                max_length=max_seq_len, truncation=True)
                for k, j in enumerate(long):
                    ids[j], types[j] = cut["input_ids"][k], cut["token_type_ids"][k]
            long = set(long)
            for j, i in enumerate(group):
                feats[i] = SequenceFeature(ids[j], types[j], i, self.label_value(examples[i].label, labels),
                                           j in long)
        return feats

    def label_value(self, label, labels):
        return None

    # --- training ---
    def collate(self, features) -> Dict[str, np.ndarray]:
        return {"input_ids": pad([f.input_ids for f in features]),
                "token_type_ids": pad([f.token_type_ids for f in features]),
                "attention_mask": pad([[1] * len(f.input_ids) for f in features])}

    @staticmethod
    def inputs(batch) -> tuple:
        return (batch["input_ids"], batch["token_type_ids"], batch.get("attention_mask"), batch.get("position_ids"))

    def forward(self, model, batch, **options):
        """(outputs, loss) of a training batch (tensors: inputs and the collate's targets)."""
        raise ValueError(f"task {self.name!r} has nothing to train; choose a task with a head")

    def loss(self, model, batch, **options):
        return self.forward(model, batch, **options)[1]

    def head_output(self, outputs):
        """What PaddleHub's forward returns for the model outputs (probabilities for classifiers)."""
        return outputs

    def batch_metrics(self, outputs, batch, labels=None, **options) -> Dict[str, float]:
        """The numbers hub.Trainer logs for one batch (PaddleHub's names)."""
        return {}

    # --- predictions ---
    def decode(self, examples, features, rows: Sequence[Dict[str, np.ndarray]], pooling: str = "cls",
               **options) -> List:
        """Per example [pooled vector, token vectors] ("cls": the [CLS] row, "mean": their mean)."""
        out = []
        for f, r in zip(features, rows):
            seq = r["sequence_output"][:len(f.input_ids)]
            pooled = seq[0] if pooling == "cls" else seq.mean(axis=0)
            out.append([pooled.tolist(), seq.tolist()])
        return out

    def score(self, examples, features, rows, labels=None, **options) -> Dict[str, float]:
        raise ValueError(f"task {self.name!r} has no metric")


class Discriminator(TaskSpec):
    name, hub = "discriminator", False

    model_class = modeling.ElectraDiscriminator

    def outputs(self, model):
        return (("logits", 1),)


class Generator(Discriminator):
    name = "generator"

    model_class = modeling.ElectraGenerator


class SequenceClassification(TaskSpec):
    """logits [B, num_labels] from the [CLS] state; mean cross entropy; accuracy."""
    name, aliases = "seq-cls", ("sequence_classification",)  # PaddleHub 2.0's spelling
    labelled = True
    hub_fields = (("input_ids", "token_type_ids", "labels"),)

    model_class = heads.ElectraForSequenceClassification

    def outputs(self, model):
        return (("logits", None),)

    def label_value(self, label, labels):
        if label is None:
            return -1
        return list(labels).index(label)

    def collate(self, features):
        return {**super().collate(features), "labels": np.asarray([f.label for f in features], dtype="int64")}

    def forward(self, model, batch, **options):
        logits = model(*self.inputs(batch))
        return logits, model.loss(logits, batch["labels"])

    def head_output(self, outputs):
        return F.softmax(outputs, axis=-1)

    def batch_metrics(self, outputs, batch, labels=None, **options):
        hit = outputs.argmax(axis=-1) == batch["labels"].reshape([-1]).astype("int64")
        return {"acc": float(hit.astype("float32").mean())}

    def decode(self, examples, features, rows, labels=None, **options):
        """Per example (label, probabilities)."""
        out = []
        for r in rows:
            p = softmax(r["logits"])
            out.append((labels[int(np.argmax(p))], p.tolist()))
        return out

    def score(self, examples, features, rows, labels=None, **options):
        logits = np.stack([r["logits"] for r in rows])
        gold = np.asarray([f.label for f in features])
        logp = log_softmax(logits)  # the original's eval loss: mean cross entropy
        return {"accuracy": metrics.accuracy(logits.argmax(-1), gold),
                "loss": float(-logp[np.arange(len(gold)), gold].mean())}


class TextMatching(SequenceClassification):
    """seq-cls of text pairs `[CLS] a [SEP] b [SEP]` (PaddleHub's text-matching)."""
    name, aliases, texts = "text-matching", (), (2,)
    # PaddleHub's LCQMC layout: the two texts encoded apart (the module joins them), or one pair
    hub_fields = (("query_input_ids", "query_token_type_ids", "title_input_ids", "title_token_type_ids", "labels"),
                  ("input_ids", "token_type_ids", "labels"))


class TextRegression(SequenceClassification):
    """A score per text (pair), e.g. sentence similarity (STS-B): one output of the [CLS] classifier,
    mean squared error; Pearson and Spearman correlation (percent), as GLUE reports STS-B."""
    name, aliases = "text-regression", ()
    labelled = False

    def model_kwargs(self, labels=None, **settings):
        return {"num_labels": 1}

    def label_value(self, label, labels):
        return float("nan") if label is None else float(label)

    def collate(self, features):
        return {**TaskSpec.collate(self, features),
                "labels": np.asarray([f.label for f in features], dtype="float32")}

    def forward(self, model, batch, **options):
        logits = model(*self.inputs(batch))
        return logits, F.mse_loss(logits[:, 0], batch["labels"].reshape([-1]).astype(logits.dtype))

    def head_output(self, outputs):
        return outputs[:, 0]

    def batch_metrics(self, outputs, batch, labels=None, **options):
        return {"mse": float(F.mse_loss(outputs[:, 0], batch["labels"].reshape([-1]).astype(outputs.dtype)))}

    def decode(self, examples, features, rows, labels=None, **options):
        """Per example (score, None)."""
        return [(float(r["logits"][0]), None) for r in rows]

    def score(self, examples, features, rows, labels=None, **options):
        pred = np.asarray([r["logits"][0] for r in rows], dtype="float64")
        gold = np.asarray([f.label for f in features], dtype="float64")
        return {**metrics.correlations(pred, gold), "mse": float(np.mean((pred - gold) ** 2))}


class TokenClassification(TaskSpec):
    """logits [B, S, num_labels]; each unit (character or word) takes the label of its first word
    piece; texts longer than max_seq_len are read in windows of half-overlapping pieces, each piece
    labelled from the window where it has the most context; entity (chunk) F1."""
    name, aliases, texts = "token-cls", ("token_cls",), (1,)  # token_cls: PaddleHub 2.0's spelling
    labelled = True
    hub_fields = (("input_ids", "token_type_ids", "seq_lengths", "labels"),)

    model_class = heads.ElectraForTokenClassification

    def outputs(self, model):
        return (("logits", 1),)

    def example(self, texts, split_char: str = "\002", **options):
        text = texts[0]
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

    def encode(self, tokenizer, examples: Sequence[TaggingExample], max_seq_len: int,
               labels: Optional[Sequence[str]] = None, **options) -> List[TaggingFeature]:
        words = sorted({w for e in examples if e.words is not None for w in e.words})
        cache = dict(zip(words, (p[1:-1] for p in tokenizer(words)["input_ids"]))) if words else {}
        tag_id = {t: i for i, t in enumerate(labels or ())}
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        room = max_seq_len - 2
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
    def _labels(logits, batch, ignore_label: int = IGNORE_INDEX):
        """[B, S] int64 labels, `ignore_label` (a PaddleHub dataset's padding label) read as IGNORE_INDEX."""
        labels = batch["labels"].reshape(logits.shape[:2]).astype("int64")
        if ignore_label != IGNORE_INDEX:
            labels = paddle.where(labels == ignore_label, paddle.full_like(labels, IGNORE_INDEX), labels)
        return labels

    def forward(self, model, batch, ignore_label: int = IGNORE_INDEX, **options):
        logits = model(*self.inputs(batch))
        return logits, model.loss(logits, self._labels(logits, batch, ignore_label))

    def head_output(self, outputs):
        return F.softmax(outputs, axis=-1)

    def batch_metrics(self, outputs, batch, labels=None, suffix: bool = False, ignore_label: int = IGNORE_INDEX,
                      **options):
        """Entity F1 of one batch (PaddleNLP's ChunkEvaluator, as PaddleHub); ignored positions count
        as outside any entity."""
        from paddlenlp.metrics import ChunkEvaluator
        outside = len(labels)  # an extra id meaning "O" at ignored positions
        lab = self._labels(outputs, batch, ignore_label).numpy()
        pred = outputs.argmax(axis=-1).numpy()
        pred[lab == IGNORE_INDEX] = outside
        lab[lab == IGNORE_INDEX] = outside
        metric = ChunkEvaluator(label_list=list(labels) + ["O"], suffix=suffix)
        lengths = batch["attention_mask"].astype("int64").sum(axis=-1).numpy()
        n_infer, n_label, n_correct = metric.compute(lengths=lengths, predictions=paddle.to_tensor(pred),
                                                     labels=paddle.to_tensor(lab))
        metric.update(n_infer.numpy(), n_label.numpy(), n_correct.numpy())
        return {"f1_score": float(metric.accumulate()[2])}

    @staticmethod
    def inside_label(label: str, suffix: bool = False) -> str:
        if suffix:
            return label[:-2] + "-I" if label.endswith("-B") else label
        return "I-" + label[2:] if label.startswith("B-") else label

    def decode(self, examples, features, rows, labels=None, suffix: bool = False, **options):
        """Per example (a label per unit, its probabilities); a unit without a word piece (a space)
        gets "O" (None when the label set has no "O") and no probabilities."""
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

    def score(self, examples, features, rows, labels=None, **options):
        pred = [lab for lab, _ in self.decode(examples, features, rows, labels)]
        return metrics.chunk_f1([e.tags for e in examples], pred)


class ReadingComprehension(TaskSpec):
    """Span extraction over `[CLS] question [SEP] context-window [SEP]` windows (finetuning.qa);
    answers are exact slices of the context; EM / F1 of the CMRC 2018 scorer."""
    name, texts, needs_token_types = "reading-comprehension", (2,), True
    # fine-tuning's eval_backend "auto" runs the layer itself: the joint head's beam ran slower under
    # oneDNN with per-batch lengths (29 s vs 16 s on 96 windows)
    prefers_dygraph = True
    hub_fields = (("input_ids", "token_type_ids", "start_positions", "end_positions"),)

    @property
    def shape(self):
        return "[[context, question], ...]"

    model_class = heads.ElectraForQuestionAnswering

    def model_kwargs(self, labels=None, simple: Optional[bool] = None, beam_size: Optional[int] = None,
                     answerable: Optional[bool] = None, **settings):
        """Only the settings given: a fine-tuned dir keeps its own otherwise."""
        given = {"simple": simple, "beam_size": beam_size, "answerable": answerable}
        return {k: v for k, v in given.items() if v is not None}

    def outputs(self, model):
        names = qa.SIMPLE_OUTPUT_NAMES if model.simple else qa.JOINT_OUTPUT_NAMES
        return tuple((n, 1 if n in ("start_logits", "end_logits") else None) for n in names)

    def min_seq_len(self, model):
        return 1 if model.simple else model.beam_size  # the joint head's top-k over positions

    def example(self, texts, **options):
        return QAExample("", question=texts[1], context=texts[0])

    def encode(self, tokenizer, examples: Sequence[QAExample], max_seq_len: int, labels=None,
               is_training: bool = False, doc_stride: Optional[int] = None,
               max_query_length: int = qa.MAX_QUERY_LENGTH, **options) -> List[qa.QAFeature]:
        """Windows of each (question, context); doc_stride None: min(128, max_seq_len // 4). With
        `is_training`, examples whose answer cannot be placed are skipped (logged)."""
        stride = doc_stride or min(qa.DOC_STRIDE, max(1, max_seq_len // 4))
        feats, skipped = [], 0
        for i, e in enumerate(examples):
            kw = {}
            if is_training:
                if not e.answers:
                    skipped += 1
                    continue
                kw = {"answer_text": e.answers[0]["text"], "answer_start": int(e.answers[0]["answer_start"])}
            try:
                feats.extend(qa.featurize_qa(tokenizer, e.question, e.context, max_seq_len, stride,
                                             max_query_length, example_index=i, **kw))
            except qa.AnswerNotFound as err:
                skipped += 1
                logger.info("question %s: %s", e.qid or i, err)
            except ValueError as err:
                raise ValueError(f"example {i}: {err} (raise max_seq_len or shorten the question)") from None
        if skipped:
            logger.warning("%d training questions skipped: their answer is not in the context", skipped)
        return feats

    def collate(self, features):
        return {**super().collate(features),
                "start_positions": np.asarray([f.start_position for f in features], dtype="int64"),
                "end_positions": np.asarray([f.end_position for f in features], dtype="int64")}

    def forward(self, model, batch, answerable_weight: float = 0.5, **options):
        outputs = model(*self.inputs(batch), start_positions=batch["start_positions"])
        return outputs, model.loss(outputs, batch["start_positions"], batch["end_positions"],
                                   answerable_weight=answerable_weight)

    def batch_metrics(self, outputs, batch, labels=None, **options):
        sp = batch["start_positions"].reshape([-1]).astype("int64")
        ep = batch["end_positions"].reshape([-1]).astype("int64")
        hit = (outputs[0].argmax(axis=-1) == sp) & (outputs[1].argmax(axis=-1) == ep)
        return {"span_acc": float(hit.astype("float32").mean())}

    def decode(self, examples, features, rows, n_best_size: int = qa.N_BEST_SIZE,
               max_answer_length: int = qa.MAX_ANSWER_LENGTH, **options) -> List[Dict]:
        """Per example the best answer: {"answer", "start", "end", "score"}, context[start:end] == answer."""
        by_example: Dict[int, list] = {}
        for f, r in zip(features, rows):
            by_example.setdefault(f.example_index, []).append((f, r))
        out = []
        for i, e in enumerate(examples):
            pairs = by_example.get(i, [])
            best = qa.postprocess_qa([f for f, _ in pairs], [r for _, r in pairs], e.context,
                                     n_best_size, max_answer_length)[0]
            out.append({"answer": best["text"], "start": int(best["start"]), "end": int(best["end"]),
                        "score": float(best["probability"])})
        return out

    def score(self, examples, features, rows, labels=None, **options):
        answers = self.decode(examples, features, rows, **options)
        preds = {e.qid: a["answer"] for e, a in zip(examples, answers)}
        dataset = {"data": [{"paragraphs": [{"qas": [{"id": e.qid, "answers": e.answers}]} for e in examples]}]}
        res = metrics.cmrc_evaluate(dataset, preds, warn=None)
        return {"em": float(res["EM"]), "f1": float(res["F1"]), "average": float(res["AVERAGE"])}


# --- checking PaddleHub-style input ----------------------------------------------------------------
def _type(x) -> str:
    return type(x).__name__


def check_data(data, task: Optional[str], max_texts: Optional[int] = None,
               max_chars: Optional[int] = None) -> List[List[str]]:
    """PaddleHub's input shape `[[text_a], [text_a, text_b], ...]` checked for `task`; returns a copy."""
    spec = get_spec(task)
    want, shape = spec.texts, spec.shape
    if not isinstance(data, (list, tuple)):
        raise TypeError(f"data must be a list of examples like {shape}, got {_type(data)}")
    if not data:
        raise ValueError("data is empty: give at least one example")
    if max_texts is not None and len(data) > max_texts:
        raise ValueError(f"data has {len(data)} examples; at most {max_texts} per request")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            raise TypeError(f"data[{i}] is a string; each example is a list of texts: {shape} "
                            f"(wrap it: [{item[:20]!r}])")
        if not isinstance(item, (list, tuple)) or len(item) not in want:
            n = len(item) if isinstance(item, (list, tuple)) else _type(item)
            raise ValueError(f"data[{i}] must hold {' or '.join(map(str, want))} text(s) for task {task!r} "
                             f"({shape}), got {n}")
        for j, text in enumerate(item):
            if not isinstance(text, str):
                raise TypeError(f"data[{i}][{j}] must be a string, got {_type(text)} {text!r}")
            if not any(c.isprintable() and not c.isspace() for c in text):
                # spaces, control and format characters only ("\x00\x01\x02", zero-width spaces): no text
                raise ValueError(f"data[{i}][{j}] is empty" + (" (it holds no printable character)" if text.strip()
                                                                else ""))
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # a lone surrogate: a str, but no text the tokenizer can take
                raise ValueError(f"data[{i}][{j}] is not valid Unicode: lone surrogate U+{ord(text[e.start]):04X} "
                                 f"at character {e.start}") from None
            if max_chars is not None and len(text) > max_chars:
                raise ValueError(f"data[{i}][{j}] has {len(text)} characters; at most {max_chars} per text")
        out.append([str(t) for t in item])
    return out


# --- the registry ----------------------------------------------------------------------------------
SPECS: Dict[Optional[str], TaskSpec] = {}
ALIASES: Dict[str, str] = {}


def register(spec: TaskSpec) -> TaskSpec:
    SPECS[spec.name] = spec
    for a in spec.aliases:
        ALIASES[a] = spec.name
    return spec


for _spec in (TaskSpec(), Discriminator(), Generator(), SequenceClassification(), TextMatching(),
              TextRegression(), TokenClassification(), ReadingComprehension()):
    register(_spec)


def task_names(hub_only: bool = False) -> Tuple:
    return tuple(n for n, s in SPECS.items() if s.hub or not hub_only)


def did_you_mean(word, choices: Sequence[str]) -> str:
    """" (did you mean 'x'?)" for a misspelt name close to one of `choices` (difflib), else ""."""
    import difflib
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def get_spec(task: Optional[str], hub_only: bool = False) -> TaskSpec:
    """The spec of `task` (an alias is accepted with a warning); unknown: ValueError naming the choices."""
    if task in ALIASES:
        logger.warning("task %r is PaddleHub 2.0's name; use %r", task, ALIASES[task])
        task = ALIASES[task]
    spec = SPECS.get(task) if task is None or isinstance(task, str) else None
    if spec is None or (hub_only and not spec.hub):
        raise ValueError(f"unknown task {task!r}{did_you_mean(task, [n for n in task_names(hub_only) if n])}; "
                         f"choose one of {', '.join(map(repr, task_names(hub_only)))}")
    return spec


# --- running a model on features -------------------------------------------------------------------
class DygraphPredictor:
    """The dygraph twin of inference.ElectraPredictor.predict_batches: the same bucketing
    (batching.run_bucketed) over the layer itself, in eval mode without gradients."""

    def __init__(self, model, spec: TaskSpec):
        self.model, self.spec = model, spec

    def _run(self, ids, types, mask):
        self.model.eval()
        with paddle.no_grad():
            out = self.model(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask))
        return tuple(o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,)))

    def predict_batches(self, input_ids, token_type_ids=None, batch_size: int = 32, pad_multiple: int = 1):
        """As ElectraPredictor's: per sequence an array, or a tuple of arrays for several outputs."""
        out = run_bucketed(self._run, input_ids, token_type_ids, batch_size, pad_id=self.model.config.pad_token_id,
                           pad_multiple=pad_multiple, seq_axes=self.spec.seq_axes(self.model))
        return [r[0] if len(r) == 1 else r for r in out]


def output_rows(spec: TaskSpec, model, outputs: Sequence) -> List[Dict[str, np.ndarray]]:
    """predict_batches' results (an array or a tuple of arrays per feature) -> {output name: array}.
    `model`: the model (its settings name the outputs) or the config of its folder (model_settings)."""
    names = spec.output_names(model)
    return [dict(zip(names, o if isinstance(o, tuple) else (o,))) for o in outputs]


def model_settings(config) -> Any:
    """What `outputs(model)` reads of a model, from the ElectraConfig of its folder (a predictor has no
    dygraph model): the QA head's saved `qa_simple` / `qa_beam_size`."""
    from types import SimpleNamespace
    extra = getattr(config, "extra", {}) or {}
    return SimpleNamespace(config=config, simple=bool(extra.get("qa_simple", False)),
                           beam_size=int(extra.get("qa_beam_size", 20)))


def predict(spec: TaskSpec, tokenizer, predictor, model, texts: Sequence[Sequence[str]], max_seq_len: int,
            batch_size: int, labels: Optional[Sequence[str]] = None, **options) -> Tuple[List, bool]:
    """The one prediction path of the hub module, its serving and paddle_electra.pipeline: PaddleHub-style
    examples `[[text_a(, text_b)], ...]` encoded (windows included), run grouped by length by `predictor`
    (an ElectraPredictor or DygraphPredictor), decoded by `spec.decode` -> (one prediction per example,
    whether any text was truncated). `model`: the model or model_settings(config) (names the outputs)."""
    examples = [spec.example(t, **options) for t in texts]
    feats = spec.encode(tokenizer, examples, max_seq_len)
    truncated = any(isinstance(f, SequenceFeature) and f.truncated for f in feats)
    outs = predictor.predict_batches([f.input_ids for f in feats], [f.token_type_ids for f in feats],
                                     batch_size=batch_size) if feats else []
    return spec.decode(examples, feats, output_rows(spec, model, outs), labels=labels, **options), truncated


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


# the architectures of config.json -> the task a fine-tuned folder is for (config's "finetuning_task" first)
_ARCHITECTURE_TASKS = {"ElectraForSequenceClassification": "seq-cls", "ElectraForTokenClassification": "token-cls",
                       "ElectraForQuestionAnswering": "reading-comprehension"}
FINETUNING_TASK_KEY = "finetuning_task"  # HF's config field; written by fine-tuning


def task_of_config(config, source: str = "config.json") -> str:
    """The task a fine-tuned model folder is for, from its config: `finetuning_task` (written by
    `paddle-electra finetune`), else its architecture's task (a classifier: seq-cls)."""
    extra = getattr(config, "extra", {}) or {}
    task = extra.get(FINETUNING_TASK_KEY)
    if isinstance(task, str) and task in SPECS:
        return task
    arch = extra.get("architectures") or []
    for a in arch:
        if a in _ARCHITECTURE_TASKS:
            return _ARCHITECTURE_TASKS[a]
    raise ValueError(f"{source}: not a fine-tuned model (architectures {arch or 'not given'}, no "
                     f"{FINETUNING_TASK_KEY!r}); fine-tune it first, or name the task (one of "
                     f"{', '.join(sorted(_ARCHITECTURE_TASKS.values()))})")

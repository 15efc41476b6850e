"""Fine-tuning tasks, one class each, registered by name (the original's finetune/task.py idea).

A task reads its examples, turns them into features, names the head it needs, computes the loss
of a batch, and scores predictions. A user adds a task by writing one class:

    @register
    class MyTask(SentenceClassificationTask):   # or SentencePairTask, TaggingTask, SpanQATask
        name = "mytask"
        labels = ["neg", "pos"]

and running `finetune/run_finetuning.py --hparams '{"task_names": ["mytask"]}'`.

Data lives in `<data_dir>/finetuning_data/<task>/{train,dev,test}.<ext>` (or the hparams
`train_file` / `dev_file` / `test_file`). Formats:
- chnsenticorp: TSV `label<TAB>text_a` with a header.
- lcqmc, bqcorpus: TSV `text_a<TAB>text_b<TAB>label`, with or without a header line (a first line
  naming its columns text_a / text_b / label, or sentence1 / sentence2 / gold_label, is a header).
- xnli: TSV `text_a<TAB>text_b<TAB>label` with a header, or XNLI's own TSV (columns by its header:
  sentence1, sentence2, gold_label), or OCNLI/CLUE JSON lines (`sentence1`, `sentence2`, `label`;
  label "-" = no gold label, skipped). XNLI's "contradictory" is read as "contradiction".
- cail: JSON lines of CAIL 2018 (`fact`, `meta.accusation`): single-label crime prediction from the
  fact text; the label is the first accusation (the label set is read from the training file and
  saved with the model).
- msra_ner: one `char TAG` per line, a blank line between sentences; or one sentence a line as
  `text<TAB>tags` (tags space- or \\x02-separated; text per character, or \\x02-separated tokens).
- cmrc2018, drcd: SQuAD-format JSON.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import paddle

from ..heads import TASK_HEADS, ElectraForTokenClassification
from . import metrics
from .config import FinetuneConfig
from .qa import (JOINT_OUTPUT_NAMES, SIMPLE_OUTPUT_NAMES, AnswerNotFound, featurize_qa, head_outputs_to_rows,
                 postprocess_qa)

logger = logging.getLogger(__name__)

TASKS: Dict[str, type] = {}


def register(cls):
    if not getattr(cls, "name", None):
        raise ValueError(f"{cls.__name__} has no task name")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, config: FinetuneConfig, tokenizer) -> "Task":
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(sorted(TASKS))}")
    return TASKS[name](config, tokenizer)


class DataError(ValueError):
    """A data file is missing or malformed; names the file and line."""


def _pad(rows: Sequence[Sequence[int]], value: int = 0, length: Optional[int] = None) -> np.ndarray:
    n = length or max(len(r) for r in rows)
    out = np.full((len(rows), n), value, dtype="int64")
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def token_ids(tokenizer, texts: Sequence[str]) -> List[List[int]]:
    """Word-piece ids of each text, without [CLS] / [SEP] and untruncated."""
    if not texts:
        return []
    return [ids[1:-1] for ids in tokenizer(list(texts))["input_ids"]]


class Task:
    """Base class. Subclasses set `name`, `head` (a key of heads.TASK_HEADS) and `extensions`, and
    implement read_file, featurize, collate, loss, predict_outputs and score."""

    name: str = ""
    head: str = ""
    extensions: Sequence[str] = (".tsv",)
    eval_metric: str = "accuracy"  # the number the tables report

    def __init__(self, config: FinetuneConfig, tokenizer):
        self.config, self.tokenizer = config, tokenizer
        self._examples: Dict[str, list] = {}

    # --- data ----------------------------------------------------------------------------------
    def data_file(self, split: str) -> str:
        override = getattr(self.config, f"{split}_file", None)
        if override:
            path = override if os.path.isabs(override) else os.path.join(self.config.data_dir, override)
            if not os.path.exists(path):
                raise DataError(f"{split}_file not found: {path}")
            return path
        base = os.path.join(self.config.raw_data_dir(self.name), split)
        for ext in self.extensions:
            if os.path.exists(base + ext):
                return base + ext
        raise DataError(f"no {split} file for task {self.name}: looked for "
                        f"{' / '.join(base + e for e in self.extensions)} (or set {split}_file in the hparams)")

    def has_split(self, split: str) -> bool:
        try:
            self.data_file(split)
            return True
        except DataError:
            return False

    def get_examples(self, split: str) -> list:
        if split not in self._examples:
            examples = self.read_file(self.data_file(split), split)
            limit = self.config.max_train_examples if split == "train" else self.config.max_eval_examples
            if limit and len(examples) > limit:
                # a seeded shuffle, the same for every trial, so subsets are comparable
                idx = list(range(len(examples)))
                random.Random(self.config.subset_seed).shuffle(idx)
                examples = [examples[i] for i in sorted(idx[:limit])]
            self._examples[split] = examples
        return self._examples[split]

    def read_file(self, path: str, split: str) -> list:
        raise NotImplementedError

    # --- model ---------------------------------------------------------------------------------
    @property
    def model_class(self):
        return TASK_HEADS[self.head]

    def model_kwargs(self) -> Dict:
        return {}

    def build_model(self, name_or_path: str):
        return self.model_class.from_pretrained(name_or_path, **self.model_kwargs())

    # --- features, batches, loss, predictions, scores ---------------------------------------------
    def featurize(self, examples: list, is_training: bool) -> list:
        raise NotImplementedError

    def collate(self, features: list, is_training: bool) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def loss(self, model, batch: Dict[str, paddle.Tensor]) -> paddle.Tensor:
        raise NotImplementedError

    def output_names(self, model) -> Sequence[str]:
        return ("logits",)

    @staticmethod
    def feature_length(feature) -> int:
        return len(feature["input_ids"] if isinstance(feature, dict) else feature.input_ids)

    def score(self, split: str, examples: list, features: list, outputs: Dict[str, np.ndarray],
              loss: Optional[float]) -> Dict[str, float]:
        raise NotImplementedError


# --- classification -------------------------------------------------------------------------------
@dataclass
class ClassificationExample:
    text_a: str
    text_b: Optional[str]
    label: Optional[str]


def truncate_pair(a: List[int], b: List[int], max_length: int):
    """The original's rule: drop the last token of the longer side (of b when equal) until it fits."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_length:
        if len(a) > len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def read_tsv(path: str) -> List[List[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quotechar=None))


def read_json_lines(path: str) -> List[Dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {i + 1}: not valid JSON ({e})") from None
    return rows


class ClassificationTask(Task):
    head = "seq-cls"
    labels: Sequence[str] = ("0", "1")
    # TSV columns when the file has no header we can read: indices of text_a, text_b, label
    columns = (0, 1, 2)
    header_names = {"text_a": ("text_a", "sentence1", "query", "text"), "text_b": ("text_b", "sentence2", "title"),
                    "label": ("label", "gold_label")}
    label_aliases: Dict[str, str] = {}

    def model_kwargs(self):
        # no label set yet (cail without its training file): a fine-tuned model brings its own
        return {"id2label": list(self.labels)} if self.labels else {}

    def _label(self, value: str, where: str) -> str:
        value = self.label_aliases.get(value.strip(), value.strip())
        if value not in self.labels:
            raise DataError(f"{where}: label {value!r} is not one of {list(self.labels)}")
        return value

    def read_file(self, path, split):
        if path.endswith(".json") or path.endswith(".jsonl"):
            return self.read_json(path, split)
        rows = read_tsv(path)
        cols, start = self.columns, 0
        if rows:
            header = [c.strip().lower() for c in rows[0]]
            found = {k: next((header.index(n) for n in names if n in header), None)
                     for k, names in self.header_names.items()}
            if found["text_a"] is not None and found["label"] is not None:  # a header naming the columns
                cols, start = (found["text_a"], found["text_b"] if cols[1] is not None else None, found["label"]), 1
        out = []
        for i, row in enumerate(rows[start:], start + 1):
            where = f"{path}: line {i}"
            if not row or not any(x.strip() for x in row):
                continue
            need = max(c for c in cols if c is not None)
            if len(row) <= need:
                raise DataError(f"{where}: expected at least {need + 1} tab-separated columns, got {len(row)}")
            text_b = row[cols[1]] if cols[1] is not None else None
            out.append(ClassificationExample(row[cols[0]], text_b, self._label(row[cols[2]], where)))
        return out

    def read_json(self, path, split):
        raise DataError(f"{path}: task {self.name} reads TSV files")

    def featurize(self, examples, is_training):
        L = self.config.max_seq_length
        ids_a = token_ids(self.tokenizer, [e.text_a for e in examples])
        pairs = [e.text_b for e in examples if e.text_b is not None]
        ids_b = iter(token_ids(self.tokenizer, pairs))
        label_id = {n: i for i, n in enumerate(self.labels)}
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        feats = []
        for e, a in zip(examples, ids_a):
            if e.text_b is not None:
                a, b = truncate_pair(a, next(ids_b), L - 3)
                ids = [cls_id] + a + [sep_id] + b + [sep_id]
                types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            else:
                a = a[:L - 2]
                ids, types = [cls_id] + a + [sep_id], [0] * (len(a) + 2)
            feats.append({"input_ids": ids, "token_type_ids": types,
                          "label": label_id[e.label] if e.label is not None else -1})
        return feats

    def collate(self, features, is_training):
        return {"input_ids": _pad([f["input_ids"] for f in features]),
                "token_type_ids": _pad([f["token_type_ids"] for f in features]),
                "attention_mask": _pad([[1] * len(f["input_ids"]) for f in features]),
                "labels": np.asarray([f["label"] for f in features], dtype="int64")}

    def loss(self, model, batch):
        logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return model.loss(logits, batch["labels"])

    def score(self, split, examples, features, outputs, loss=None):
        logits = outputs["logits"]
        labels = np.asarray([f["label"] for f in features])
        # the original's eval loss: mean cross entropy
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        return {"accuracy": metrics.accuracy(logits.argmax(-1), labels),
                "loss": float(-logp[np.arange(len(labels)), labels].mean())}

    def predictions(self, examples, features, outputs) -> List[str]:
        return [self.labels[i] for i in outputs["logits"].argmax(-1)]


@register
class ChnSentiCorp(ClassificationTask):
    name = "chnsenticorp"
    labels = ("0", "1")
    columns = (1, None, 0)  # label<TAB>text_a


class SentencePairTask(ClassificationTask):
    columns = (0, 1, 2)


@register
class LCQMC(SentencePairTask):
    name = "lcqmc"


@register
class BQCorpus(SentencePairTask):
    name = "bqcorpus"


@register
class XNLI(SentencePairTask):
    name = "xnli"
    labels = ("contradiction", "entailment", "neutral")  # HFL's order (it spells the first "contradictory")
    label_aliases = {"contradictory": "contradiction"}
    extensions = (".tsv", ".json", ".jsonl")

    def read_json(self, path, split):
        out, skipped = [], 0
        for i, row in enumerate(read_json_lines(path), 1):
            if row.get("label") in (None, "-", ""):
                skipped += 1  # OCNLI: no gold label
                continue
            for k in ("sentence1", "sentence2"):
                if k not in row:
                    raise DataError(f"{path}: record {i}: field {k!r} is missing")
            out.append(ClassificationExample(row["sentence1"], row["sentence2"],
                                             self._label(str(row["label"]), f"{path}: record {i}")))
        if skipped:
            logger.info("%s: skipped %d records without a gold label", path, skipped)
        return out


@register
class CAIL(ClassificationTask):
    """CAIL 2018 crime prediction as single-label classification (the first accusation)."""
    name = "cail"
    extensions = (".json", ".jsonl")
    labels: Sequence[str] = ()

    def __init__(self, config, tokenizer):
        super().__init__(config, tokenizer)
        self.labels = ()

    def set_labels(self, labels: Sequence[str]):
        self.labels = tuple(labels)

    def _label(self, value, where):
        if self.labels and value not in self.labels:
            raise DataError(f"{where}: accusation {value!r} does not occur in the training data")
        return value

    def read_json(self, path, split):
        out = []
        for i, row in enumerate(read_json_lines(path), 1):
            try:
                fact, acc = row["fact"], row["meta"]["accusation"]
            except (KeyError, TypeError):
                raise DataError(f"{path}: record {i}: needs 'fact' and 'meta.accusation'") from None
            if not acc:
                raise DataError(f"{path}: record {i}: empty meta.accusation")
            out.append(ClassificationExample(fact, None, str(acc[0]).strip("[]")))
        return out

    def read_file(self, path, split):
        rows = self.read_json(path, split)
        if not self.labels:
            if split != "train":
                raise DataError("cail: the label set comes from the training file; read it first "
                                "(or load a fine-tuned model, which carries its labels)")
            self.labels = tuple(sorted({e.label for e in rows}))
        for i, e in enumerate(rows, 1):
            self._label(e.label, f"{path}: record {i}")
        return rows


# --- tagging ----------------------------------------------------------------------------------------
@dataclass
class TaggingExample:
    words: List[str]
    tags: List[str]


@register
class MSRANER(Task):
    name = "msra_ner"
    head = "token-cls"
    extensions = (".txt", ".tsv")
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
    eval_metric = "f1"
    IGNORE = ElectraForTokenClassification.ignore_index

    def model_kwargs(self):
        return {"id2label": list(self.labels)}

    def read_file(self, path, split):
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        out, words, tags = [], [], []
        for i, line in enumerate(lines, 1):
            where = f"{path}: line {i}"
            if "\t" in line:  # text<TAB>tags, one sentence a line
                text, tag_str = line.split("\t", 1)
                ws = text.split("\x02") if "\x02" in text else list(text)
                ts = tag_str.replace("\x02", " ").split()
                if len(ws) != len(ts):
                    raise DataError(f"{where}: {len(ws)} tokens but {len(ts)} tags")
                out.append(TaggingExample(ws, [self._tag(t, where) for t in ts]))
                continue
            parts = line.split()
            if not parts:
                if words:
                    out.append(TaggingExample(words, tags))
                    words, tags = [], []
                continue
            if len(parts) != 2:
                raise DataError(f"{where}: expected 'char TAG', got {line!r}")
            words.append(parts[0])
            tags.append(self._tag(parts[1], where))
        if words:
            out.append(TaggingExample(words, tags))
        return out

    def _tag(self, t, where):
        if t not in self.labels:
            raise DataError(f"{where}: tag {t!r} is not one of {list(self.labels)}")
        return t

    def featurize(self, examples, is_training):
        # each word (a character here) is tokenized on its own, as the original's tagging task;
        # its first word piece carries the label, the other pieces are ignored
        cache: Dict[str, List[int]] = {}
        tag_id = {t: i for i, t in enumerate(self.labels)}
        L = self.config.max_seq_length
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        feats = []
        for e in examples:
            ids, labels, first = [cls_id], [self.IGNORE], []
            for w, t in zip(e.words, e.tags):
                if w not in cache:
                    cache[w] = token_ids(self.tokenizer, [w])[0]
                pieces = cache[w]
                if not pieces or len(ids) + len(pieces) > L - 1:
                    first.append(-1)  # no token (whitespace) or cut by max_seq_length: predicted "O"
                    continue
                first.append(len(ids))
                ids.extend(pieces)
                labels.extend([tag_id[t]] + [self.IGNORE] * (len(pieces) - 1))
            ids.append(sep_id)
            labels.append(self.IGNORE)
            feats.append({"input_ids": ids, "labels": labels, "first": first})
        return feats

    def collate(self, features, is_training):
        return {"input_ids": _pad([f["input_ids"] for f in features]),
                "token_type_ids": _pad([[0] * len(f["input_ids"]) for f in features]),
                "attention_mask": _pad([[1] * len(f["input_ids"]) for f in features]),
                "labels": _pad([f["labels"] for f in features], value=self.IGNORE)}

    def loss(self, model, batch):
        logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return model.loss(logits, batch["labels"])

    def predictions(self, examples, features, outputs) -> List[List[str]]:
        out = []
        for f, logits in zip(features, outputs["logits"]):
            pred = logits.argmax(-1)
            out.append([self.labels[int(pred[p])] if p >= 0 else "O" for p in f["first"]])
        return out

    def score(self, split, examples, features, outputs, loss=None):
        res = metrics.chunk_f1([e.tags for e in examples], self.predictions(examples, features, outputs))
        if loss is not None:
            res["loss"] = loss
        return res


# --- span QA --------------------------------------------------------------------------------------
@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: List[Dict] = field(default_factory=list)  # [{"text", "answer_start"}]


class SpanQATask(Task):
    head = "reading-comprehension"
    extensions = (".json",)
    eval_metric = "f1"

    def model_kwargs(self):
        c = self.config
        return {"simple": not c.joint_prediction, "beam_size": c.beam_size, "answerable": c.answerable_classifier}

    def read_file(self, path, split):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)["data"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a SQuAD-format JSON file ({e})") from None
        out = []
        for article in data:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    out.append(QAExample(str(qa["id"]).strip(), qa["question"], para["context"],
                                         list(qa.get("answers", []))))
        return out

    def featurize(self, examples, is_training):
        c, feats, failures = self.config, [], 0
        for i, e in enumerate(examples):
            kw = {}
            if is_training:
                if not e.answers:
                    failures += 1
                    continue
                kw = {"answer_text": e.answers[0]["text"], "answer_start": int(e.answers[0]["answer_start"])}
            try:
                fs = featurize_qa(self.tokenizer, e.question, e.context, c.max_seq_length, c.doc_stride,
                                  c.max_query_length, example_index=i, **kw)
            except AnswerNotFound as err:
                failures += 1
                logger.info("%s %s: %s", self.name, e.qid, err)
                continue
            feats.extend(fs)
        if failures:
            logger.warning("%s: %d training examples skipped (answer not found in the context)", self.name, failures)
        return feats

    def collate(self, features, is_training):
        return {"input_ids": _pad([f.input_ids for f in features]),
                "token_type_ids": _pad([f.token_type_ids for f in features]),
                "attention_mask": _pad([f.attention_mask for f in features]),
                "start_positions": np.asarray([f.start_position for f in features], dtype="int64"),
                "end_positions": np.asarray([f.end_position for f in features], dtype="int64")}

    def loss(self, model, batch):
        outputs = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                        start_positions=batch["start_positions"])
        return model.loss(outputs, batch["start_positions"], batch["end_positions"],
                          answerable_weight=self.config.answerable_weight)

    def output_names(self, model):
        return SIMPLE_OUTPUT_NAMES if model.simple else JOINT_OUTPUT_NAMES

    def predictions(self, examples, features, outputs) -> Dict[str, str]:
        rows = head_outputs_to_rows(list(outputs), list(outputs.values()))
        by_example: Dict[int, list] = {}
        for f, r in zip(features, rows):
            by_example.setdefault(f.example_index, []).append((f, r))
        preds = {}
        for i, e in enumerate(examples):
            pairs = by_example.get(i, [])
            best = postprocess_qa([f for f, _ in pairs], [r for _, r in pairs], e.context,
                                  self.config.n_best_size, self.config.max_answer_length)[0]
            preds[e.qid] = best["text"]
        return preds

    def score(self, split, examples, features, outputs, loss=None):
        preds = self.predictions(examples, features, outputs)
        dataset = {"data": [{"paragraphs": [{"qas": [{"id": e.qid, "answers": e.answers}]} for e in examples]}]}
        res = metrics.cmrc_evaluate(dataset, preds, warn=None)
        self.last_predictions = preds
        return {"em": float(res["EM"]), "f1": float(res["F1"]), "average": float(res["AVERAGE"])}


@register
class CMRC2018(SpanQATask):
    name = "cmrc2018"


@register
class DRCD(SpanQATask):
    name = "drcd"

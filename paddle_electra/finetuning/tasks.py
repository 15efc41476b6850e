"""Fine-tuning dataset tasks: each a reader bound to a task spec of paddle_electra.tasks (which owns
the features, batches, loss, predictions and scores) with the spec's options from the hparams,
registered by name. A user adds a dataset by writing one class:

    @register
    class MyTask(SentencePairTask):   # or SentenceClassificationTask, PairRegressionTask, ...
        name = "mytask"
        labels = ("neg", "pos")

and running `finetune/run_finetuning.py --hparams '{"task_names": ["mytask"]}'`.

Data lives in `<data_dir>/finetuning_data/<task>/{train,dev,test}.<ext>` (or the hparams
`train_file` / `dev_file` / `test_file`). Files are UTF-8 (a byte-order mark is skipped); an error
names the file, the line (JSON: the path to the field) and the field. Formats:
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
- sts (the worked example of a regression task, docs/design.md): TSV `text_a<TAB>text_b<TAB>score`.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
from typing import Dict, List, Sequence, Tuple

from .. import tasks as specs
from ..io import DataError  # noqa: F401 - raised for every bad data file (and re-exported)
from ..tasks import ClassificationExample, TaggingExample
from ..tasks.squad import read_squad, read_text, text_field  # noqa: F401 - the readers below use them (re-exported)

logger = logging.getLogger(__name__)

TASKS: Dict[str, type] = {}


def register(cls):
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no task name")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, config, tokenizer) -> "Task":
    """The task `name` reading the files of `config` (a FinetuneConfig)."""
    if name not in TASKS:
        from ..tasks import did_you_mean
        raise ValueError(f"unknown task {name!r}{did_you_mean(name, sorted(TASKS))}; registered: "
                         f"{', '.join(sorted(TASKS))}")
    return TASKS[name](config, tokenizer)


# --- reading files -----------------------------------------------------------------------------------
def read_tsv(path: str) -> List[List[str]]:
    """Rows of a tab-separated file (no quoting: one row per line). A field may be as long as the file (csv's
    default limit of 131,072 characters is a guard against runaway quoted fields, which unquoted files have
    not); a csv error names the file and the line."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quotechar=None)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        return list(reader)
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: cannot read the tab-separated row ({e})") from None
    finally:
        csv.field_size_limit(limit)


def read_json_lines(path: str) -> List[Tuple[int, Dict]]:
    """(line number, object) of each non-blank line."""
    rows = []
    for i, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {i}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {i}: expected a JSON object, got {type(obj).__name__}")
        rows.append((i, obj))
    return rows


# --- the task base ---------------------------------------------------------------------------------
class Task:
    """A dataset bound to a spec. Subclasses set `name`, `spec` (a paddle_electra.tasks spec),
    `extensions` and implement read_file; `options` (the spec's, from the hparams) when the spec has
    some to set. Features, batches, loss, predictions and scores are the spec's, called with this
    task's labels and options (`featurize`, `predictions`, `score` name the calls the trainer makes)."""

    name: str = ""
    spec: specs.TaskSpec = specs.get_spec(None)
    extensions: Sequence[str] = (".tsv",)
    eval_metric: str = "accuracy"  # the number the tables report
    default_max_seq_length, default_epochs = 128, 3.0  # the recipe's, when the hparams do not say
    labels: Sequence[str] = ()
    learns_labels = False    # the label set is read from the training file (else a fine-tuned model's)
    writes_answers = False   # predictions are written as {question id: answer}

    def __init__(self, config, tokenizer):
        self.config, self.tokenizer = config, tokenizer
        self._examples: Dict[str, list] = {}

    @property
    def options(self) -> specs.Options:
        """The spec's options for this run (its defaults unless a task kind maps hparams to them)."""
        return self.spec.Options()

    # --- data ----------------------------------------------------------------------------------
    def data_file(self, split: str) -> str:
        override = getattr(self.config, f"{split}_file", None)
        if override:
            path = override if os.path.isabs(override) else os.path.join(self.config.data_dir, override)
            if not os.path.exists(path):
                raise DataError(f"{split}_file not found: {path}")
            if os.path.isdir(path):
                raise DataError(f"{split}_file {path} is a folder; expected a data file")
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
            path = self.data_file(split)
            examples = self.read_file(path, split)
            if not examples:
                raise DataError(f"{path}: holds no examples (task {self.name}, {split} split)")
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

    def set_labels(self, labels: Sequence[str]):
        self.labels = tuple(labels)

    # --- the spec's calls with this task's labels and options -------------------------------------
    def model_kwargs(self) -> Dict:
        return self.spec.model_kwargs(self.labels, self.options)

    def build_model(self, name_or_path: str):
        return self.spec.model_class.from_pretrained(name_or_path, **self.model_kwargs())

    def featurize(self, examples: list, is_training: bool) -> list:
        return self.spec.encode(self.tokenizer, examples, self.config.max_seq_length, self.labels, is_training,
                                self.options)

    def predictions(self, examples, features, rows) -> list:
        return [p for p, _ in self.spec.decode(examples, features, rows, self.labels, self.options)]

    def score(self, split: str, examples: list, features: list, rows) -> Dict[str, float]:
        return self.spec.score(examples, features, rows, self.labels, self.options)


# --- classification -------------------------------------------------------------------------------
def truncate_pair(a: List[int], b: List[int], max_length: int):
    """The original's rule (tokenizer.truncated_pair_lengths): the longer side loses its last token
    (the second on ties) until the pair fits."""
    from ..tokenizer import truncated_pair_lengths
    la, lb = truncated_pair_lengths(len(a), len(b), max_length)
    return list(a[:la]), list(b[:lb])


class ClassificationTask(Task):
    spec = specs.get_spec("seq-cls")
    labels: Sequence[str] = ("0", "1")

    def __init__(self, config, tokenizer):
        super().__init__(config, tokenizer)
        given = getattr(config, "labels", None)
        if given:  # the hparam `labels` (--labels a,b,c): a user's own label set, no subclass needed
            if not self.spec.labelled:
                raise DataError(f"task {self.name} predicts a score; it takes no labels (got {list(given)})")
            self.labels = tuple(given)
            self.learns_labels = False
    # TSV columns when the file has no header we can read: indices of text_a, text_b, label
    columns = (0, 1, 2)
    header_names = {"text_a": ("text_a", "sentence1", "query", "text"), "text_b": ("text_b", "sentence2", "title"),
                    "label": ("label", "gold_label", "score")}
    label_aliases: Dict[str, str] = {}

    def model_kwargs(self) -> Dict:
        pooling = self.config.classifier_pooling
        return {**super().model_kwargs(), **({"pooling": pooling} if pooling != "cls" else {})}

    def _label(self, value: str, where: str):
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
        out, wider = [], []
        need = max(c for c in cols if c is not None)
        width = len(rows[0]) if start else need + 1  # the header's columns, else those read
        for i, row in enumerate(rows[start:], start + 1):
            where = f"{path}: line {i}"
            if not row or not any(x.strip() for x in row):
                continue
            if len(row) <= need:
                raise DataError(f"{where}: expected at least {need + 1} tab-separated columns, got {len(row)}")
            if len(row) > width and any(x.strip() for x in row[width:]):
                wider.append(i)  # a tab inside a text, or a column nobody reads: said below
            text_a = text_field(row[cols[0]], where, "text_a")
            text_b = text_field(row[cols[1]], where, "text_b") if cols[1] is not None else None
            out.append(ClassificationExample(text_a, text_b, self._label(row[cols[2]], where)))
        if wider:
            logger.warning("%s: %d line(s) have more than %d tab-separated columns (line %s%s); the extra columns "
                           "are not read (a tab inside a text cuts it there)", path, len(wider), width,
                           ", ".join(map(str, wider[:5])), ", ..." if len(wider) > 5 else "")
        return out

    def read_json(self, path, split):
        raise DataError(f"{path}: task {self.name} reads TSV files")


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
        for i, row in read_json_lines(path):
            where = f"{path}: line {i}"
            if row.get("label") in (None, "-", ""):
                skipped += 1  # OCNLI: no gold label
                continue
            out.append(ClassificationExample(text_field(row.get("sentence1"), where, "sentence1"),
                                             text_field(row.get("sentence2"), where, "sentence2"),
                                             self._label(str(row["label"]), where)))
        if skipped:
            logger.info("%s: skipped %d records without a gold label", path, skipped)
        return out


@register
class CAIL(ClassificationTask):
    """CAIL 2018 crime prediction as single-label classification (the first accusation)."""
    name = "cail"
    extensions = (".json", ".jsonl")
    labels: Sequence[str] = ()
    learns_labels = True

    def __init__(self, config, tokenizer):
        super().__init__(config, tokenizer)
        self.labels = ()

    def _label(self, value, where):
        if self.labels and value not in self.labels:
            raise DataError(f"{where}: accusation {value!r} does not occur in the training data")
        return value

    def _records(self, path):
        """(line, example) of each JSON line."""
        out = []
        for i, row in read_json_lines(path):
            where = f"{path}: line {i}"
            acc = row.get("meta").get("accusation") if isinstance(row.get("meta"), dict) else None
            if not isinstance(acc, list) or not acc:
                raise DataError(f"{where}: field 'meta.accusation' must be a non-empty list, got {acc!r}")
            out.append((i, ClassificationExample(text_field(row.get("fact"), where, "fact"), None,
                                                 str(acc[0]).strip("[]"))))
        return out

    def read_file(self, path, split):
        records = self._records(path)
        if not self.labels:
            if split != "train":
                raise DataError("cail: the label set comes from the training file; read it first "
                                "(or load a fine-tuned model, which carries its labels)")
            self.labels = tuple(sorted({e.label for _, e in records}))
        for i, e in records:
            self._label(e.label, f"{path}: line {i}")
        return [e for _, e in records]


# --- regression: the worked example of adding a task (docs/design.md) ---------------------------------
class PairRegressionTask(SentencePairTask):
    """Text pairs with a score: TSV `text_a<TAB>text_b<TAB>score` (a header naming the columns optional)."""
    spec = specs.get_spec("text-regression")
    labels = ()
    eval_metric = "spearman"

    def _label(self, value, where):
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: score {value.strip()!r} is not a number") from None


@register
class STS(PairRegressionTask):
    name = "sts"


# --- tagging ----------------------------------------------------------------------------------------
@register
class MSRANER(Task):
    name = "msra_ner"
    spec = specs.get_spec("token-cls")
    default_max_seq_length = 256
    extensions = (".txt", ".tsv")
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
    eval_metric = "f1"

    def read_file(self, path, split):
        lines = read_text(path).split("\n")
        out, words, tags = [], [], []
        for i, line in enumerate(lines, 1):
            where = f"{path}: line {i}"
            if "\t" in line:  # text<TAB>tags, one sentence a line
                text, tag_str = line.split("\t", 1)
                text_field(text, where, "text")
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


# --- span QA --------------------------------------------------------------------------------------
class SpanQATask(Task):
    spec = specs.get_spec("reading-comprehension")
    default_max_seq_length, default_epochs = 512, 2.0
    extensions = (".json",)
    eval_metric = "f1"
    writes_answers = True

    @property
    def options(self):
        c = self.config
        return self.spec.options(simple=c.qa_simple, beam_size=c.beam_size, answerable=c.answerable_classifier,
                                 doc_stride=c.doc_stride, max_query_length=c.max_query_length,
                                 n_best_size=c.n_best_size, max_answer_length=c.max_answer_length,
                                 answerable_weight=c.answerable_weight)

    def read_file(self, path, split):
        return read_squad(path)

    def predictions(self, examples, features, rows) -> Dict[str, str]:
        answers = self.spec.decode(examples, features, rows, options=self.options)
        return {e.qid: a["answer"] for e, a in zip(examples, answers)}


@register
class CMRC2018(SpanQATask):
    name = "cmrc2018"


@register
class DRCD(SpanQATask):
    name = "drcd"

"""The base of the task specs: the examples and features every kind shares, the typed options of a
kind (`Options`), and `TaskSpec`, the backbone's task (None) whose methods each kind overrides.

A spec holds, in one place:
- `model_class` and `model_kwargs(labels, options)` (the head and its settings), `outputs(model)`
  (output names and which axis follows the input length), `min_seq_len(model)`;
- `example(texts, options)`: an example from PaddleHub-style `[text_a(, text_b)]` (the input of the
  hub module, the pipeline and serving); `encode(tokenizer, examples, max_seq_length, labels, is_training,
  options)`: features (sliding windows included), labelled when the examples are;
- `collate(features)`: a training batch; `forward(model, batch, options)` -> (outputs, loss);
- `decode(examples, features, rows, labels, options)`: one prediction per example from the
  per-feature output rows (`{name: array}`, see batching.run_bucketed); `score(...)`: the metrics.

`Options` is a frozen dataclass per kind (`spec.options(**given)`: a name the kind does not have is a
TypeError naming it and the known ones); every method takes the spec's own Options or None (defaults).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import heads, modeling
from ..batching import pad

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


# --- options ---------------------------------------------------------------------------------------
def did_you_mean(word, choices: Sequence[str]) -> str:
    """" (did you mean 'x'?)" for a misspelt name close to one of `choices` (difflib), else ""."""
    import difflib
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6) if isinstance(word, str) else []
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Options:
    """The options of a task kind: typed fields with defaults. `of(task, **given)` builds them; a name
    the kind does not have is an error (a misspelt option was silently ignored before)."""

    @classmethod
    def of(cls, task: Optional[str] = None, **given) -> "Options":
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"task {task!r} has no option {', '.join(map(repr, unknown))}"
                            f"{did_you_mean(unknown[0], known)}; its options: {', '.join(known) or 'none'}")
        return cls(**given)


@dataclass(frozen=True)
class EmbeddingOptions(Options):
    pooling: str = "cls"  # the pooled vector: the [CLS] row ("cls") or the mean of the token vectors ("mean")


def _texts_shape(n: Tuple[int, ...]) -> str:
    return {(1, 2): "[[text], ...] or [[text_a, text_b], ...]", (1,): "[[text], ...]",
            (2,): "[[text_a, text_b], ...]"}[n]


# --- the base spec: the backbone ---------------------------------------------------------------------
class TaskSpec:
    """Base: the backbone's sequence output, inputs as `[CLS] a [SEP] (b [SEP])`."""

    name: Optional[str] = None
    Options = EmbeddingOptions
    texts: Tuple[int, ...] = (1, 2)  # texts per example
    labelled: bool = False           # takes a label map (label_map / id2label)
    needs_token_types: bool = False  # the head reads segment ids (answers are searched in segment 1)

    def options(self, **given) -> Options:
        """This kind's options; an unknown name is a TypeError naming it and the known ones."""
        return self.Options.of(self.name, **given)

    def _options(self, options: Optional[Options]) -> Options:
        if options is None:
            return self.Options()
        if not isinstance(options, self.Options):
            raise TypeError(f"task {self.name!r} takes {self.Options.__name__}, got {type(options).__name__}")
        return options

    @property
    def shape(self) -> str:
        """The input shape, for messages (tasks.check_data)."""
        return _texts_shape(self.texts)

    model_class = modeling.ElectraModel

    def model_kwargs(self, labels: Optional[Sequence[str]] = None, options: Optional[Options] = None) -> Dict:
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
    def example(self, texts: Sequence[str], options: Optional[Options] = None):
        return ClassificationExample(*texts)

    def encode(self, tokenizer, examples: Sequence[ClassificationExample], max_seq_length: int,
               labels: Optional[Sequence[str]] = None, is_training: bool = False,
               options: Optional[Options] = None) -> List[SequenceFeature]:
        """`[CLS] a [SEP] (b [SEP])`; longer than max_seq_length: the tokenizer's truncation (the
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
            long = [j for j, x in enumerate(ids) if len(x) > max_seq_length]
            if long:
                cut = tokenizer([a[j] for j in long], [b[j] for j in long] if b else None,
                                max_length=max_seq_length, truncation=True)
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

    def forward(self, model, batch, options: Optional[Options] = None):
        """(outputs, loss) of a training batch (tensors: inputs and the collate's targets)."""
        raise ValueError(f"task {self.name!r} has nothing to train; choose a task with a head")

    def loss(self, model, batch, options: Optional[Options] = None):
        return self.forward(model, batch, options)[1]

    # --- predictions ---
    def decode(self, examples, features, rows: Sequence[Dict[str, np.ndarray]],
               labels: Optional[Sequence[str]] = None, options: Optional[Options] = None) -> List:
        """Per example [pooled vector, token vectors] ("cls": the [CLS] row, "mean": their mean)."""
        pooling = self._options(options).pooling
        out = []
        for f, r in zip(features, rows):
            seq = r["sequence_output"][:len(f.input_ids)]
            pooled = seq[0] if pooling == "cls" else seq.mean(axis=0)
            out.append([pooled.tolist(), seq.tolist()])
        return out

    def score(self, examples, features, rows, labels=None, options: Optional[Options] = None) -> Dict[str, float]:
        raise ValueError(f"task {self.name!r} has no metric")


class Discriminator(TaskSpec):
    name = "discriminator"

    model_class = modeling.ElectraDiscriminator

    def outputs(self, model):
        return (("logits", 1),)


class Generator(Discriminator):
    name = "generator"

    model_class = modeling.ElectraGenerator

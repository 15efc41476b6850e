"""The task layer: one spec per task kind, through which fine-tuning, ElectraPredictor, the PaddleHub
module, its serving and the pipeline all dispatch (the idea of google-research/electra's
finetune/task.py, where a Task owns its featurizer, prediction module and scorer).

- base.py: examples, features, `Options` (typed, per kind) and `TaskSpec` (the backbone, task None),
  Discriminator, Generator;
- classification.py: seq-cls, text-matching, text-regression; tagging.py: token-cls (and `entities`);
  reading_comprehension.py: reading-comprehension over qa.py (windows, answer search);
- metrics.py: the published tables' scores; squad.py: SQuAD-format data;
- registry.py: the specs by name (`get_spec`); inputs.py: PaddleHub-style input checks;
  running.py: the dygraph runner, output rows, `predict` (the one prediction path).

A spec knows none of its consumers: this package imports nothing of finetuning/, hub, serving or
inference. A fine-tuning dataset (paddle_electra.finetuning.tasks) is a reader bound to a spec.
Adding a task kind: a spec (subclass one, `register` it) and a reader (see TextRegression and
docs/design.md).
"""
from .base import (IGNORE_INDEX, ClassificationExample, Discriminator, EmbeddingOptions, Generator, Options,
                   QAExample, SequenceFeature, TaggingExample, TaggingFeature, TaskSpec)
from .classification import ClassificationOptions, SequenceClassification, TextMatching, TextRegression
from .inputs import check_data, check_text
from .reading_comprehension import QAOptions, ReadingComprehension
from .registry import SPECS, did_you_mean, get_spec, register, task_names, unknown_task
from .running import FINETUNING_TASK_KEY, DygraphPredictor, model_settings, output_rows, predict, task_of_config
from .tagging import TaggingOptions, TokenClassification, entities

__all__ = ["IGNORE_INDEX", "ClassificationExample", "ClassificationOptions", "Discriminator", "DygraphPredictor",
           "EmbeddingOptions", "FINETUNING_TASK_KEY", "Generator", "Options", "QAExample", "QAOptions",
           "ReadingComprehension", "SPECS", "SequenceClassification", "SequenceFeature", "TaggingExample",
           "TaggingFeature", "TaggingOptions", "TaskSpec", "TextMatching", "TextRegression", "TokenClassification",
           "check_data", "check_text", "did_you_mean", "entities", "get_spec", "model_settings", "output_rows",
           "predict", "register", "task_names", "task_of_config", "unknown_task"]

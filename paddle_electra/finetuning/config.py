"""Fine-tuning hyperparameters: the original's FinetuningConfig keys (configure_finetuning.py of
google-research/electra and HFL's fork), with its defaults and its per-task / per-size rules.

An hparams JSON (finetune/params_<task>.json) sets any of these keys; unknown keys are an error,
as in the original. Keys not set take the rules below, then the defaults:
- max_seq_length and num_train_epochs: the task's (finetuning.tasks: 128 and 3; QA tasks cmrc2018,
  drcd: 512 and 2; tagging msra_ner: 256).
- model_size "large": learning_rate 5e-5 and layerwise_lr_decay 0.9; "base": learning_rate 1e-4;
  "small" / "small-ex": learning_rate 3e-4 (HFL's recommendation for the Chinese models).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import typing
from dataclasses import dataclass, field
from typing import Dict, List, Optional

logger = logging.getLogger(__name__)

SIZE_LEARNING_RATES = {"small": 3e-4, "small-ex": 3e-4, "base": 1e-4, "large": 5e-5}


def _is_a(value, kind) -> bool:
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_is_a(v, item) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is list:
        item = typing.get_args(kind)[0]
        return "a list of " + {int: "integers", float: "numbers", bool: "booleans", str: "strings"}.get(item, str(item))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(kind, str(kind))


class HparamsError(ValueError):
    """An hparams file or key is wrong."""


# keys of earlier releases an hparams file may still give (with a warning, until the next release): the
# original's `joint_prediction` is `qa_simple` inverted (the QA head's one name: heads' `simple`, config.json's
# `qa_simple`)
RENAMED_HPARAMS = {"joint_prediction": ("qa_simple", lambda joint: not joint)}  # one release: remove in 0.2


def upgrade_hparams(d: Dict, source: str = "hparams", warn: bool = True) -> Dict:
    """`d` with the keys of RENAMED_HPARAMS under their names now (a warning each, when `warn`)."""
    d = dict(d)
    for old, (new, convert) in RENAMED_HPARAMS.items():
        if old not in d:
            continue
        value = d.pop(old)
        if new in d:
            raise HparamsError(f"{source}: {old!r} and {new!r} are the same hparam; give {new!r} only")
        if warn:
            logger.warning("%s: hparam %r is now %r (the opposite: joint_prediction false is qa_simple true); the "
                           "old name is accepted until the next release", source, old, new)
        d[new] = convert(value) if isinstance(value, bool) else value  # not a bool: the type check names it
    return d


@dataclass
class FinetuneConfig:
    model_name: str = ""
    data_dir: str = "."
    # model
    task_names: List[str] = field(default_factory=lambda: ["chnsenticorp"])
    model_size: str = "small"
    vocab_size: int = 21128
    do_lower_case: bool = True
    # what to run
    do_train: bool = True
    do_eval: bool = True
    do_test: bool = False           # also score the test split (when it has labels)
    write_test_outputs: bool = False  # write test-split predictions
    num_trials: int = 1
    keep_all_models: bool = True    # save every trial's model (else only the last)
    save_model: bool = True
    # training
    learning_rate: Optional[float] = None  # None: by model_size
    weight_decay_rate: float = 0.01
    layerwise_lr_decay: Optional[float] = None  # None: 0.8 (0.9 for large); 0 turns it off
    corrected_layer_depth: bool = False  # the original gives the top layer decay^2; True: decay^1
    num_train_epochs: Optional[float] = None
    warmup_proportion: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 1
    # sizing
    max_seq_length: Optional[int] = None
    train_batch_size: int = 32
    eval_batch_size: int = 32
    # QA
    max_query_length: int = 64
    doc_stride: int = 128
    n_best_size: int = 20
    max_answer_length: int = 30
    qa_simple: bool = False         # the plain start/end head (HF style); False: the original's joint head
    beam_size: int = 20
    answerable_classifier: bool = True
    answerable_weight: float = 0.5
    # additions of this port (not in the original)
    train_file: Optional[str] = None  # override <data_dir>/finetuning_data/<task>/train.*
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    labels: Optional[List[str]] = None  # classification: the label set (else the task's own, or the data's)
    classifier_pooling: str = "cls"  # sentence heads: "cls" (the original) or "mean" of the real tokens' states
    max_train_examples: Optional[int] = None  # a subset (the first N, after a seeded shuffle)
    max_eval_examples: Optional[int] = None
    subset_seed: int = 12345
    # evaluation: "dygraph" (the layer itself), "inference" (static export + Paddle Inference), or
    # "auto": inference for classification and tagging (5-10x faster here), dygraph for QA (the joint
    # head's beam ran slower under oneDNN with per-batch lengths: 29 s vs 16 s on 96 windows)
    eval_backend: str = "auto"
    log_every: int = 20
    output_dir: Optional[str] = None  # default <data_dir>/finetuning_models
    results_dir: Optional[str] = None  # default <data_dir>/results
    device: Optional[str] = None
    num_threads: Optional[int] = None
    # "bf16": the Linear GEMMs of training in bf16 with fp32 weights and accumulation, on CPUs with native
    # bf16 (avx512_bf16, amx_bf16; paddle_electra/bf16_linear.py), refused elsewhere; "off": fp32
    amp: str = "off"

    def __post_init__(self):
        if isinstance(self.task_names, str):
            self.task_names = [self.task_names]
        self._check_types()
        if len(self.task_names) != 1:
            raise HparamsError(f"task_names must name one task, got {self.task_names} "
                               f"(multi-task fine-tuning is not supported)")
        if isinstance(self.labels, str):
            self.labels = [x.strip() for x in self.labels.split(",")]
        if self.labels is not None:
            if not isinstance(self.labels, list) or not all(isinstance(x, str) and x for x in self.labels):
                raise HparamsError(f"labels must be a list of label names (or \"a,b,c\"), got {self.labels!r}")
            if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
                raise HparamsError(f"labels must name at least two distinct labels, got {self.labels}")
        if self.classifier_pooling not in ("cls", "mean"):
            raise HparamsError(f"classifier_pooling must be \"cls\" or \"mean\", got {self.classifier_pooling!r}")
        from .tasks import TASKS as _TASKS
        if self.task_names[0] not in _TASKS:
            from ..tasks import did_you_mean
            raise HparamsError(f"unknown task {self.task_names[0]!r}{did_you_mean(self.task_names[0], sorted(_TASKS))}"
                               f"; registered: {', '.join(sorted(_TASKS))}")
        if self.model_size not in SIZE_LEARNING_RATES:
            raise HparamsError(f"model_size {self.model_size!r} is not one of {sorted(SIZE_LEARNING_RATES)}")
        from .tasks import TASKS, Task  # the task's recipe defaults (QA: 512 tokens, 2 epochs)
        task = TASKS.get(self.task_names[0], Task)
        if self.max_seq_length is None:
            self.max_seq_length = task.default_max_seq_length
        if self.num_train_epochs is None:
            self.num_train_epochs = task.default_epochs
        if self.learning_rate is None:
            self.learning_rate = SIZE_LEARNING_RATES[self.model_size]
        if self.layerwise_lr_decay is None:
            self.layerwise_lr_decay = 0.9 if self.model_size == "large" else 0.8
        for k in ("max_seq_length", "train_batch_size", "eval_batch_size", "num_trials"):
            if int(getattr(self, k)) < 1:
                raise HparamsError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.amp not in ("off", "bf16"):
            raise HparamsError(f"amp must be 'off' or 'bf16', got {self.amp!r}")
        if self.eval_backend not in ("dygraph", "inference", "auto"):
            raise HparamsError(f"eval_backend must be 'dygraph', 'inference' or 'auto', got {self.eval_backend!r}")

    def _check_types(self):
        """Every key of the type its field declares (a JSON integer for a float is fine), else an error
        naming the key: `--set train_batch_size='"abc"'` failed later with int()'s message alone."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, hint = getattr(self, f.name), hints[f.name]
            kinds = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
            if not any(_is_a(value, k) for k in kinds):
                raise HparamsError(f"{f.name} must be {' or '.join(_describe(k) for k in kinds)}, got "
                                   f"{type(value).__name__} {value!r:.60}")

    @property
    def task_name(self) -> str:
        return self.task_names[0]

    @classmethod
    def from_dict(cls, d: Dict, source: str = "hparams") -> "FinetuneConfig":
        d = upgrade_hparams(d, source)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            from ..tasks import did_you_mean
            hint = "".join(did_you_mean(k, sorted(names)) for k in unknown[:1])
            raise HparamsError(f"{source}: unknown hparam(s) {unknown}{hint}; known: {sorted(names)}")
        try:
            return cls(**d)
        except TypeError as e:
            raise HparamsError(f"{source}: {e}") from None

    @classmethod
    def load(cls, hparams: Optional[str], **overrides) -> "FinetuneConfig":
        """`hparams` is a JSON file or a JSON string (as the original's --hparams)."""
        d = {}
        if hparams:
            if os.path.exists(hparams):
                try:
                    with open(hparams, encoding="utf-8") as f:
                        d = json.load(f)
                except json.JSONDecodeError as e:
                    raise HparamsError(f"{hparams}: not valid JSON ({e})") from None
            else:
                try:
                    d = json.loads(hparams)
                except json.JSONDecodeError:
                    raise HparamsError(f"--hparams {hparams!r} is neither a file nor a JSON object") from None
            if not isinstance(d, dict):
                raise HparamsError(f"{hparams}: expected a JSON object")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, source=hparams or "hparams")

    def to_dict(self) -> Dict:
        return dataclasses.asdict(self)

    # default locations, as the original lays them out under data_dir
    def raw_data_dir(self, task: str) -> str:
        return os.path.join(self.data_dir, "finetuning_data", task)

    def model_dir(self, trial: int) -> str:
        base = self.output_dir or os.path.join(self.data_dir, "finetuning_models")
        return os.path.join(base, f"{self.task_name}_model_{trial}")

    def results_path(self) -> str:
        return os.path.join(self.results_dir or os.path.join(self.data_dir, "results"),
                            f"{self.task_name}_results.json")

    def eval_results_path(self, stamp: str) -> str:
        """`paddle-electra evaluate`'s own results file (never the training run's): <task>_eval_results_<stamp>.json."""
        return os.path.join(self.results_dir or os.path.join(self.data_dir, "results"),
                            f"{self.task_name}_eval_results_{stamp}.json")

    def qa_preds_file(self, split: str) -> str:
        return os.path.join(self.results_dir or os.path.join(self.data_dir, "results"),
                            f"{self.task_name}_qa", f"{self.task_name}_{split}_preds.json")

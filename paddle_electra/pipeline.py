"""One-line prediction with a fine-tuned model, as PaddleNLP's Taskflow / HF's pipeline:

    from paddle_electra import pipeline
    clf = pipeline("seq-cls", "my_chnsenticorp_model/")
    clf("房间很干净")                       # {"label": "1", "score": 0.99}
    clf(["房间很干净", "太差了"])            # one result per input
    ner = pipeline("token-cls", "my_msra_model/")
    ner("王小明在北京工作")                  # [{"text": "王小明", "label": "PER", "start": 0, "end": 3}, ...]
    qa = pipeline("reading-comprehension", "my_cmrc_model/")
    qa({"context": "哈尔滨是黑龙江省的省会。", "question": "黑龙江省的省会是哪里？"})
                                            # {"answer": "哈尔滨", "start": 0, "end": 3, "score": 0.93}

Inputs: a text; a pair as {"text": a, "text_pair": b} or (a, b) (seq-cls, text-matching,
text-regression); {"context": ..., "question": ...} or (context, question) (reading-comprehension).
A list gives a list of results. `task=None` takes the task the folder was fine-tuned for (its
config.json: `finetuning_task`, else the head class).

The model runs on paddle_electra.inference.ElectraPredictor (engine, precision as there); encoding,
windows and decoding are paddle_electra.tasks.predict, the very path of the PaddleHub module and its
serving. Only the last step, the shape of each result, is the pipeline's own (`format_result`).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

# the tasks a pipeline runs (those with a head and a decoded prediction)
TASKS = ("seq-cls", "text-matching", "text-regression", "token-cls", "reading-comprehension")
# the keys of a dict input, in the order of the texts of tasks.check_data (PaddleHub's)
_PAIR_KEYS = ("text", "text_pair")
_QA_KEYS = ("context", "question")


def input_keys(task: str) -> Tuple[str, ...]:
    if task == "token-cls":
        return _PAIR_KEYS[:1]
    return _QA_KEYS if task == "reading-comprehension" else _PAIR_KEYS


def as_texts(item, task: str, where: str = "input") -> List[str]:
    """One input (a text, a (text, text_pair) / (context, question) sequence, or a dict of those keys)
    -> the task's list of texts; errors name `where` and the field."""
    keys = input_keys(task)
    if isinstance(item, str):
        return [item]
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(keys))
        if unknown:
            from .tasks import did_you_mean
            raise ValueError(f"{where}: unknown field {unknown[0]!r}{did_you_mean(unknown[0], keys)}; "
                             f"task {task} takes {' and '.join(map(repr, keys))}")
        missing = [k for k in (keys if task in ("text-matching", "reading-comprehension") else keys[:1]) if k not in item]
        if missing:
            raise ValueError(f"{where}: field {missing[0]!r} is missing (task {task} takes "
                             f"{' and '.join(map(repr, keys))})")
        texts = [item[k] for k in keys if k in item and item[k] is not None]
        for k in keys:
            if k in item and item[k] is not None and not isinstance(item[k], str):
                raise ValueError(f"{where}: field {k!r} must be a string, got {type(item[k]).__name__}")
        return texts
    if isinstance(item, (list, tuple)):
        return list(item)
    raise ValueError(f"{where}: expected a text or a dict with {' and '.join(map(repr, keys))}, "
                     f"got {type(item).__name__}")


def format_result(task: str, prediction, text: str = "", spans: Optional[Sequence[Tuple[int, int]]] = None,
                  suffix: bool = False):
    """A result of the task's decode (tasks.TaskSpec.decode, what the hub module returns) in the
    pipeline's shape."""
    if task in ("seq-cls", "text-matching"):
        label, probs = prediction
        return {"label": label, "score": float(max(probs))}
    if task == "text-regression":
        return {"score": float(prediction[0])}
    if task == "token-cls":
        from .tasks import entities
        labels, _ = prediction
        return entities(text, labels, suffix=suffix, spans=spans)
    return dict(prediction)  # reading comprehension: {"answer", "start", "end", "score"} already


class Pipeline:
    """`pipeline(...)`'s object: call it with one input or a list of them."""

    def __init__(self, task: Optional[str], model: str, engine: str = "auto", precision: str = "fp32",
                 max_seq_length: Optional[int] = None, batch_size: int = 32, device: Optional[str] = None,
                 num_threads: Optional[int] = None, split_char: Optional[str] = None, suffix: Optional[bool] = None):
        from .config import CONFIG_NAME, ElectraConfig
        from .heads import normalize_label_map
        from .inference import ElectraPredictor
        from .resolve import resolve
        from .tasks import did_you_mean, get_spec, model_settings, task_of_config
        from .tokenizer import ElectraTokenizer
        self.model_dir = resolve(model)
        cfg_path = os.path.join(self.model_dir, CONFIG_NAME)
        self.config = ElectraConfig.from_json_file(cfg_path)
        self.task = task_of_config(self.config, cfg_path) if task is None else task
        if self.task not in TASKS:
            get_spec(self.task)  # an unknown name: the registry's error, with its "did you mean"
            raise ValueError(f"task {self.task!r} has no pipeline{did_you_mean(self.task, TASKS)}; "
                             f"choose one of {', '.join(TASKS)} (embeddings: ElectraPredictor, task=None)")
        self.spec = get_spec(self.task)
        arch = self.config.extra.get("architectures") or []
        if self.spec.model_class.__name__ not in arch:
            raise ValueError(f"{self.model_dir} holds {', '.join(arch) or 'no fine-tuned head'}, not a model "
                             f"fine-tuned for task {self.task!r} ({self.spec.model_class.__name__})")
        self.labels = None
        if self.spec.labelled:
            extra = self.config.extra
            self.labels = normalize_label_map(extra.get("num_labels"), extra.get("id2label"), extra.get("label2id"))
        limit = self.config.max_position_embeddings
        self.max_seq_length = int(max_seq_length or min(512, limit))
        if not 3 <= self.max_seq_length <= limit:
            raise ValueError(f"max_seq_length must be in [3, {limit}] for this model, got {self.max_seq_length}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        # the task's options (token-cls: split_char, suffix); one the task does not have is an error
        self.options = self.spec.options(**{k: v for k, v in (("split_char", split_char), ("suffix", suffix))
                                            if v is not None})
        self.tokenizer = ElectraTokenizer.from_pretrained(self.model_dir)
        self.predictor = ElectraPredictor.from_pretrained(self.model_dir, task=self.task, precision=precision,
                                                          engine=engine, device=device, num_threads=num_threads)
        self._settings = model_settings(self.config)
        self._warned_truncation = False

    @property
    def input_keys(self) -> Tuple[str, ...]:
        return input_keys(self.task)

    def _spans(self, text: str) -> Optional[List[Tuple[int, int]]]:
        """token-cls with `split_char` in the text: the character span of each word (else None: one
        unit per character)."""
        split_char = self.options.split_char
        if split_char not in text:
            return None
        spans, pos = [], 0
        for word in text.split(split_char):
            spans.append((pos, pos + len(word)))
            pos += len(word) + len(split_char)
        return spans

    def predict(self, inputs: Sequence[Any], where: str = "input") -> List:
        """One result per input (see the module docstring)."""
        from .tasks import check_data, predict
        texts = [as_texts(x, self.task, f"{where} {i}") for i, x in enumerate(inputs)]
        texts = check_data(texts, self.task)
        preds, truncated = predict(self.spec, self.tokenizer, self.predictor, self._settings, texts,
                                   self.max_seq_length, self.batch_size, labels=self.labels, options=self.options)
        if truncated and not self._warned_truncation:
            logger.warning("texts longer than max_seq_length=%d tokens are truncated (longer text first); "
                           "this warning is shown once", self.max_seq_length)
            self._warned_truncation = True
        if self.task != "token-cls":
            return [format_result(self.task, p) for p in preds]
        return [format_result(self.task, p, t[0], self._spans(t[0]), self.options.suffix) for p, t in zip(preds, texts)]

    def __call__(self, inputs, batch_size: Optional[int] = None):
        if batch_size is not None:
            if int(batch_size) < 1:
                raise ValueError(f"batch_size must be >= 1, got {batch_size}")
            self.batch_size = int(batch_size)
        single = isinstance(inputs, (str, dict)) or (
            isinstance(inputs, tuple) and inputs and all(isinstance(x, str) for x in inputs))
        out = self.predict([inputs] if single else list(inputs))
        return out[0] if single else out

    def __repr__(self):
        return f"Pipeline(task={self.task!r}, model={self.model_dir!r}, predictor={self.predictor!r})"


def pipeline(task: Optional[str], model: str, engine: str = "auto", precision: str = "fp32", **kwargs) -> Pipeline:
    """A callable predicting with the fine-tuned model folder (or registered name) `model` for `task`
    ("seq-cls", "text-matching", "text-regression", "token-cls", "reading-comprehension"; None: the
    folder's own). `engine` / `precision`: ElectraPredictor's ("auto" / "fp32"; "int8" on ONNX Runtime,
    "bf16" on native-bf16 CPUs). Keywords: max_seq_length (default min(512, the model's)), batch_size (32),
    device, num_threads; token-cls only (another task refuses them): split_char (words split by it instead of
    characters), suffix (labels as "PER-B")."""
    return Pipeline(task, model, engine=engine, precision=precision, **kwargs)


class _CallableModule(type(os)):
    """`paddle_electra.pipeline` is this module once anything imported it (Python binds a package's
    submodule to its name), so the module itself calls `pipeline`: `paddle_electra.pipeline(task, dir)`
    works either way."""

    def __call__(self, *args, **kwargs) -> Pipeline:
        return pipeline(*args, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule

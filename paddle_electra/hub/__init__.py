"""The PaddleHub adapter behind the `chinese-electra-small` / `chinese-electra-base` hub modules.

A hub module is `@moduleinfo(...) class X(ElectraHubModule): variant = "<registry name>"`; everything
else lives here, once, over the task specs of paddle_electra.tasks (model class, encoding with its
windows, decoding, loss and metrics of each task) and the length-bucketing runner. The API is
PaddleHub 2.4's for transformer modules (constructor, `predict`, `get_embedding`, `get_tokenizer`,
`training_step` / `validation_step` for `hub.Trainer`, the `@serving` method for `hub serving`),
with the bugs of PaddleHub's own ELECTRA modules fixed:

- tasks: None (embeddings), seq-cls, token-cls, text-matching, and (new) reading-comprehension and
  text-regression;
- `load_checkpoint` that does not exist is an error, not silently ignored; it takes a fine-tuned
  from_pretrained dir (label map included) or a PaddleHub `.pdparams` state dict;
- no `label_map` means labels "0".."num_classes-1" (PaddleHub's token-cls crashed);
- `predict` never mutates its input; token-cls gives one label per input character / token, without
  [CLS] or padding labels; long texts use sliding windows (token-cls, reading comprehension) or are
  truncated with one warning (classification); batches are grouped by length, not padded to
  max_seq_len;
- embeddings are `[pooled, token_vectors]` per text without padding rows, pooled by [CLS] or mean;
- the serving method passes arguments by keyword (PaddleHub's shifted `batch_size` into
  `split_char`) and validates requests, answering errors in PaddleHub's envelope.

This package: the module (here), its table of tasks (tasks.py: PaddleHub's batch layouts, head outputs,
per-batch metrics, task aliases over the specs of paddle_electra.tasks), the tokenizer and dataset of
PaddleHub's data side (data.py). The server (`python -m paddle_electra.hub serving start ...`) is
paddle_electra.serving; a request is checked once, by `validate_request`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import weakref
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn
from paddlehub.module.module import serving
from paddlehub.module.nlp_module import TransformerModule

from .. import runtime
from ..batching import pad
from ..io import CheckpointError, load_pdparams, temporary_folder
from ..modeling_utils import load_state_strict
from ..resolve import resolve
from ..config import CONFIG_NAME, ElectraConfig, get_variant
from ..heads import normalize_label_map
from ..modeling import ElectraModel
from ..serving.app import ServedModule, ServingRequest
from ..tasks import IGNORE_INDEX, DygraphPredictor, check_data, check_text, get_spec, predict
from ..tasks.inputs import type_name as _type
from ..tasks.reading_comprehension import windows_needed
from ..tokenizer import ElectraTokenizer, bundled_vocab_path, truncated_pair_lengths
from .data import HubTokenizer, ReadingComprehensionDataset  # noqa: F401 - the package's API
from .tasks import ALIASES, HUB_TASKS, HubTask, hub_task  # noqa: F401

logger = logging.getLogger(__name__)

TASKS = tuple(HUB_TASKS)
IGNORE_LABEL = IGNORE_INDEX  # label of positions that do not count (padding), PaddleHub's datasets' default
# a serving request's fields and their defaults (PaddleHub's predict_method)
REQUEST_FIELDS = {"data": None, "max_seq_len": 128, "batch_size": 32, "use_gpu": False, "split_char": "\002",
                  "return_prob": False, "pooling": None}


# --- argument checks (check_data, check_text: paddle_electra.tasks, shared with the pipeline) -------
def check_int(name: str, value, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_type(value)} {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}" if hi is not None
                         else f"{name} must be >= {lo}, got {value}")
    return int(value)


def labels_from_label_map(label_map, num_classes: int) -> List[str]:
    """PaddleHub's `label_map` ({id: name}, ids as int or, from JSON, str) or a list of names; none
    means "0".."num_classes-1"."""
    if label_map is None:
        check_int("num_classes", num_classes, 1)
        return [str(i) for i in range(num_classes)]
    if isinstance(label_map, dict):
        try:
            return normalize_label_map(id2label=label_map)
        except ValueError as e:
            raise ValueError(f"label_map: {e} (expected {{0: 'name', 1: 'name', ...}})") from None
    if isinstance(label_map, (list, tuple)):
        return normalize_label_map(id2label=list(label_map))
    raise TypeError(f"label_map must be a dict {{id: label}} or a list of labels, got {_type(label_map)}")


def join_pairs(query_ids: np.ndarray, title_ids: np.ndarray, pad_id: int, max_len: int):
    """PaddleHub's text-matching batches hold the two texts encoded apart ([CLS] a [SEP], [CLS] b [SEP],
    padded); the model reads them as one pair `[CLS] a [SEP] b [SEP]`, as the original's sentence-pair
    tasks do, cut to max_len by the original's rule (tokenizer.truncated_pair_lengths: the longer
    text loses its last token, the second on ties)."""
    ids, types = [], []
    for q, t in zip(query_ids, title_ids):
        a = [int(x) for x in q[1:] if x != pad_id][:-1]  # text a without [CLS] / [SEP] / padding
        b = [int(x) for x in t[1:] if x != pad_id][:-1]
        la, lb = truncated_pair_lengths(len(a), len(b), max_len - 3)
        a, b = a[:la], b[:lb]
        cls_id, sep_id = int(q[0]), int([x for x in q if x != pad_id][-1])
        ids.append([cls_id] + a + [sep_id] + b + [sep_id])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
    return pad(ids, pad_id), pad(types, 0)


# --- the module ----------------------------------------------------------------------------------
class ElectraHubModule(nn.Layer, TransformerModule, ServedModule):
    """Base of the ELECTRA hub modules; subclasses set `variant` (a registry name)."""

    variant: str = None
    _tasks_supported = [t for t in TASKS if t]

    def __init__(self, task: Optional[str] = None, load_checkpoint: Optional[str] = None,
                 label_map=None, num_classes: int = 2, suffix: bool = False, *,
                 use_fast_path: bool = True, precision: str = "fp32", num_threads: Optional[int] = None,
                 engine: str = "auto",
                 ignore_label: int = IGNORE_LABEL, max_serving_texts: int = 256,
                 max_serving_chars: int = 10000, **kwargs):
        super().__init__()
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(kwargs))}; accepted: "
                            "task, load_checkpoint, label_map, num_classes, suffix, use_fast_path, precision, "
                            "num_threads, engine, ignore_label, max_serving_texts, max_serving_chars")
        self.spec, self.hub_task = hub_task(task)  # PaddleHub 2.0's names are accepted with a warning
        if self.variant is None:
            raise TypeError("ElectraHubModule is a base class: a hub module sets `variant`")
        if label_map is not None and not self.spec.labelled:
            raise ValueError(f"label_map is for {', '.join(t for t in TASKS if t and get_spec(t).labelled)}, "
                             f"not task {self.spec.name!r}")
        self.task = self.spec.name
        self.suffix = bool(suffix)
        self.ignore_label = int(ignore_label)
        self.max_serving_texts = check_int("max_serving_texts", max_serving_texts, 1)
        self.max_serving_chars = check_int("max_serving_chars", max_serving_chars, 1)
        self.use_fast_path, self.precision, self.num_threads = bool(use_fast_path), precision, num_threads
        self.engine = engine  # the fast path's (inference.choose_engine)
        self._predictor = None
        self._warned_truncation = False
        labels = labels_from_label_map(label_map, num_classes) if self.spec.labelled else None
        self.model, source = self._load(load_checkpoint, labels, label_map is not None)
        # the dir holding exactly these weights (for the fast path); not so with a new head
        self._weights_dir = source if self.model.load_report and self.model.load_report.complete else None
        self.labels = None
        if labels is not None:
            self.labels = list(self.model.labels)
            self.label_map = dict(enumerate(self.labels))  # PaddleHub's attribute: {id: label}
            self.num_classes = len(self.labels)
        vocab = os.path.join(source or "", "vocab.txt")
        self._vocab_file = vocab if source and os.path.exists(vocab) else bundled_vocab_path()
        self.tokenizer = ElectraTokenizer(self._vocab_file)
        self.eval()

    # --- weights ---------------------------------------------------------------------------------
    @property
    def config(self) -> ElectraConfig:
        return self.model.config

    @property
    def backbone(self) -> ElectraModel:
        return self.model if isinstance(self.model, ElectraModel) else self.model.electra

    def _load(self, load_checkpoint, labels, labels_given):
        """-> (model, the from_pretrained dir it was loaded from, or None for a .pdparams)."""
        cls, kw = self.spec.model_class, self.spec.model_kwargs(labels)  # a new head: the class's defaults
        if load_checkpoint is not None:
            if not isinstance(load_checkpoint, (str, os.PathLike)):
                raise TypeError(f"load_checkpoint must be a path, got {_type(load_checkpoint)}")
            path = os.fspath(load_checkpoint)
            if not os.path.exists(path):
                raise FileNotFoundError(f"load_checkpoint {path!r} does not exist")
            if os.path.isdir(path):
                if not labels_given and self._fine_tuned_for(cls, path):
                    kw = {}  # the dir's own label map
                return cls.from_pretrained(path, **kw), path
            if path.endswith(".pdparams"):
                return self._load_pdparams(cls, path, kw), None
            raise ValueError(f"load_checkpoint {path!r}: expected a from_pretrained dir (config.json + "
                             f"model.safetensors) or a PaddleHub .pdparams file")
        path = resolve(self.variant)
        return cls.from_pretrained(path, **kw), path

    @staticmethod
    def _fine_tuned_for(cls, path: str) -> bool:
        try:
            with open(os.path.join(path, CONFIG_NAME), encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            return False
        return cfg.get("architectures") == [cls.__name__] and "id2label" in cfg

    def _load_pdparams(self, cls, path, kw):
        """A state dict saved by hub.Trainer (this module's keys, `model.` prefix) or of the bare task
        model. The backbone's shapes come from the base weights' config when present, else the registry."""
        try:
            config = ElectraConfig.from_json_file(os.path.join(resolve(self.variant, download=False), CONFIG_NAME))
        except FileNotFoundError:
            config = get_variant(self.variant).discriminator
        model = cls(config, **kw)
        state = load_pdparams(path)  # pickle: only because the caller named this file explicitly
        if state and all(k.startswith("model.") for k in state):
            state = {k[len("model."):]: v for k, v in state.items()}
        try:
            load_state_strict(model, state, path)
        except CheckpointError as e:
            raise CheckpointError(f"{e}\n(task, num_classes / label_map must be those the checkpoint was "
                                  f"trained with)") from None
        return model

    def save_pretrained(self, path: str) -> str:
        """A from_pretrained dir (label map included) that `load_checkpoint=` takes back."""
        return self.model.save_pretrained(path, vocab_file=self._vocab_file)

    def _weights_changed(self):
        """The fast path runs a copy of the weights: training or new weights make it stale."""
        self._predictor, self._weights_dir = None, None

    def train(self, mode: bool = True):
        if mode:
            self._weights_changed()
        return super().train(mode)

    def set_state_dict(self, state_dict, *args, **kwargs):
        self._weights_changed()
        return super().set_state_dict(state_dict, *args, **kwargs)

    set_dict = load_dict = set_state_dict  # nn.Layer's aliases

    def get_tokenizer(self, **kwargs) -> HubTokenizer:
        """A PaddleNLP tokenizer (what PaddleHub's datasets accept) splitting text as the original."""
        return HubTokenizer(self._vocab_file, **kwargs)

    # --- running the model -----------------------------------------------------------------------
    def _set_device(self, use_gpu: bool):
        if not isinstance(use_gpu, bool):
            raise TypeError(f"use_gpu must be true or false, got {_type(use_gpu)} {use_gpu!r}")
        if use_gpu and not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
            raise RuntimeError("use_gpu=True but this PaddlePaddle build sees no GPU (install paddlepaddle-gpu)")
        device = runtime.resolve_device("gpu" if use_gpu else "cpu")
        params = self.parameters()
        if params and params[0].place.is_gpu_place() != use_gpu:
            self.to(device=device)
            self._predictor = None
        return device

    def _fast_path(self, use_gpu: bool):
        """Paddle Inference predictor of the same weights (paddle_electra.inference): several times
        faster than dygraph on CPU, the same outputs within 1e-4."""
        if not self.use_fast_path or use_gpu:
            return None
        if self._predictor is None:
            try:
                from ..inference import ElectraPredictor
            except ImportError:
                self.use_fast_path = False
                return None
            if self._weights_dir is None:
                # weights that exist only here (a new head, a .pdparams, after training): the predictor
                # reads a from_pretrained dir, so write them once, for as long as this module lives
                # under $PADDLE_ELECTRA_HOME/.tmp (io.temporary_folder): removed at exit (the server turns
                # SIGTERM into an exit), or by the next process if this one is killed
                tmp = temporary_folder("hub")
                self._tmp_cleanup = weakref.finalize(self, shutil.rmtree, tmp, True)
                self._weights_dir = self.save_pretrained(os.path.join(tmp, "model"))
            self._predictor = ElectraPredictor.from_pretrained(
                self._weights_dir, task=self.task, precision=self.precision, num_threads=self.num_threads,
                device="cpu", engine=self.engine)
        return self._predictor

    def _options(self, spec, split_char: str = "\002", pooling: str = "cls"):
        """The spec's options from the module's settings: those its HubTask names (token-cls: split_char,
        suffix, ignore_label; embeddings: pooling)."""
        given = {"split_char": split_char, "suffix": self.suffix, "ignore_label": self.ignore_label,
                 "pooling": pooling}
        return spec.options(**{k: given[k] for k in HUB_TASKS[spec.name].options})

    def _predict(self, spec, texts: List[List[str]], max_seq_len: int, batch_size: int, use_gpu: bool,
                 options) -> list:
        """spec's predictions of PaddleHub examples: encode (windows included), run grouped by length
        (the fast path, or the layer itself: the backbone for embeddings of a task module), decode."""
        self._set_device(use_gpu)
        self.eval()
        model = self.model if spec is self.spec else self.backbone
        predictor = (self._fast_path(use_gpu) if model is self.model else None) or DygraphPredictor(model, spec)
        # the same path as paddle_electra.pipeline (tasks.predict)
        out, truncated = predict(spec, self.tokenizer, predictor, model, texts, max_seq_len, batch_size,
                                 labels=self.labels, options=options)
        if truncated and not self._warned_truncation:
            logger.warning("texts longer than max_seq_len=%d tokens are truncated (longer text first); "
                           "this warning is shown once", max_seq_len)
            self._warned_truncation = True
        return out

    def _check_run_args(self, max_seq_len, batch_size):
        check_int("max_seq_len", max_seq_len, 3, self.config.max_position_embeddings)
        check_int("batch_size", batch_size, 1)

    # --- PaddleHub's API --------------------------------------------------------------------------
    def predict(self, data, max_seq_len: int = 128, split_char: str = "\002", batch_size: int = 1,
                use_gpu: bool = False, return_prob: bool = False):
        """seq-cls / text-matching: a label per example; text-regression: a score per example;
        token-cls: a label per input character (or per `split_char`-separated token);
        reading-comprehension ([[context, question], ...]): {"answer", "start", "end", "score"} per
        example with context[start:end] == answer; task None: the embeddings of get_embedding. With
        return_prob, (results, probabilities) (None for a score)."""
        examples = check_data(data, self.task)
        self._check_run_args(max_seq_len, batch_size)
        if not isinstance(return_prob, bool):
            raise TypeError(f"return_prob must be true or false, got {_type(return_prob)}")
        if self.task is None:
            return self.get_embedding(examples, max_seq_len=max_seq_len, batch_size=batch_size, use_gpu=use_gpu)
        if not isinstance(split_char, str) or not split_char:
            raise ValueError(f"split_char must be a non-empty string, got {split_char!r}")
        out = self._predict(self.spec, examples, max_seq_len, batch_size, use_gpu, self._options(self.spec, split_char))
        if not out or not isinstance(out[0], tuple):  # reading comprehension: answers only
            return out
        results, probs = [r for r, _ in out], [p for _, p in out]
        return (results, probs) if return_prob else results

    def get_embedding(self, data, max_seq_len: int = 128, batch_size: int = 1, pooling: str = "cls",
                      use_gpu: bool = False):
        """Per example, [pooled_vector, token_vectors]: the vectors of its real tokens ([CLS] ... [SEP],
        no padding) and their [CLS] row ("cls", what ELECTRA's classifiers read) or mean ("mean")."""
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        examples = check_data(data, None)
        self._check_run_args(max_seq_len, batch_size)
        spec = get_spec(None)
        return self._predict(spec, examples, max_seq_len, batch_size, use_gpu, self._options(spec, pooling=pooling))

    # --- training with hub.Trainer ----------------------------------------------------------------
    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, attention_mask=None,
                query_input_ids=None, query_token_type_ids=None, query_position_ids=None,
                query_attention_mask=None, title_input_ids=None, title_token_type_ids=None,
                title_position_ids=None, title_attention_mask=None, seq_lengths=None, labels=None,
                start_positions=None, end_positions=None):
        """PaddleHub's keyword interface. Returns the spec's head output (probabilities for
        classifiers, task None: the sequence output, reading comprehension: the head's outputs), or
        with labels / start_positions (outputs, loss, metrics)."""
        pad_id = self.config.pad_token_id
        if query_input_ids is not None:  # PaddleHub's text-matching layout
            if not any("query_input_ids" in layout for layout in self.hub_task.fields):
                raise ValueError(f"query/title inputs are for task 'text-matching', not {self.task!r}")
            ids, types = join_pairs(query_input_ids.numpy(), title_input_ids.numpy(), pad_id,
                                    self.config.max_position_embeddings)
            input_ids, token_type_ids = paddle.to_tensor(ids), paddle.to_tensor(types)
            position_ids = attention_mask = None
        if input_ids is None:
            raise ValueError("forward needs input_ids (or query_input_ids and title_input_ids)")
        if attention_mask is None:  # PaddleHub's datasets pad with [PAD] and pass no mask
            attention_mask = (input_ids != pad_id).astype("int64")
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                 "position_ids": position_ids}
        targets = {k: v for k, v in (("labels", labels), ("start_positions", start_positions),
                                     ("end_positions", end_positions)) if v is not None}
        if not targets:
            return self.hub_task.head_output(self.model(input_ids, token_type_ids, attention_mask, position_ids))
        batch.update(targets)
        options = self._options(self.spec)
        outputs, loss = self.spec.forward(self.model, batch, options)
        metrics = self.hub_task.batch_metrics(outputs, batch, self.labels, options)
        return self.hub_task.head_output(outputs), loss, metrics

    def _step(self, batch):
        """PaddleHub's positional batch (a layout of the task's HubTask.fields) through forward."""
        fields = list(batch)
        layout = next((names for names in self.hub_task.fields if len(names) == len(fields)), None)
        if layout is None:
            if not self.hub_task.fields:
                raise RuntimeError("task None (embeddings) has nothing to train; create the module with a task")
            raise ValueError(f"task {self.task!r}: a batch of {len(fields)} fields, expected "
                             f"{' or '.join(map(str, self.hub_task.fields))}")
        return self(**dict(zip(layout, fields)))

    def training_step(self, batch, batch_idx: int):
        _, loss, metrics = self._step(batch)
        return {"loss": loss, "metrics": metrics}

    def validation_step(self, batch, batch_idx: int):
        _, loss, metrics = self._step(batch)
        return {"loss": float(loss), "metrics": metrics}

    # --- serving ------------------------------------------------------------------------------------
    @serving
    def predict_method(self, data=None, max_seq_len: int = 128, batch_size: int = 32, use_gpu: bool = False,
                       split_char: str = "\002", return_prob: bool = False, pooling: Optional[str] = None,
                       **extra):
        """`POST /predict/<name>` with {"data": [[...], ...], ...}: every argument by keyword (PaddleHub's
        own passed batch_size into split_char), requests checked against the module's limits.
        paddle_electra.serving's server calls validate_request and run_request itself, so that requests that
        wait together share model calls."""
        request = self.validate_request({"data": data, "max_seq_len": max_seq_len, "batch_size": batch_size,
                                         "use_gpu": use_gpu, "split_char": split_char, "return_prob": return_prob,
                                         "pooling": pooling, **extra})
        return self.run_request(request.data, request.batch_size, **request.settings)

    def check_request(self, data=None, **fields) -> ServingRequest:
        """validate_request of keyword fields (PaddleHub's serving method's arguments)."""
        return self.validate_request({"data": data, **fields})

    def validate_request(self, fields: Dict[str, Any], max_texts: Optional[int] = None,
                         max_text_chars: Optional[int] = None) -> ServingRequest:
        """The one check of a serving request, for PaddleHub's `hub serving` (predict_method) and
        paddle_electra.serving: its fields (REQUEST_FIELDS, their defaults when not given) -> ServingRequest;
        TypeError / ValueError naming the field. Texts are held to max_serving_texts / max_serving_chars, or
        to a server's tighter `max_texts` / `max_text_chars`."""
        for name in fields:
            check_text(name, "a field name of the request")
        extra = sorted(set(fields) - set(REQUEST_FIELDS))
        if extra:
            raise ValueError(f"unknown request field(s): {', '.join(extra)}; accepted: {', '.join(REQUEST_FIELDS)}")
        f = {**REQUEST_FIELDS, **fields}
        data, batch_size, max_seq_len = f["data"], f["batch_size"], f["max_seq_len"]
        if data is None:
            raise ValueError('the request has no "data" field: send {"data": [["text"], ...]}')
        max_texts = min(self.max_serving_texts, max_texts or self.max_serving_texts)
        max_chars = min(self.max_serving_chars, max_text_chars or self.max_serving_chars)
        check_data(data, self.task, max_texts=max_texts, max_chars=max_chars)
        check_int("batch_size", batch_size, 1, self.max_serving_texts)
        self._check_run_args(max_seq_len, batch_size)
        for name in ("return_prob", "use_gpu"):
            if not isinstance(f[name], bool):
                raise TypeError(f"{name} must be true or false, got {_type(f[name])}")
        pooling, split_char = f["pooling"], f["split_char"]
        if self.task is None:
            pooling = "cls" if pooling is None else pooling
            if pooling not in ("cls", "mean"):
                raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
            return ServingRequest(data, batch_size, {"max_seq_len": max_seq_len, "pooling": pooling,
                                                     "use_gpu": f["use_gpu"]})
        if pooling is not None:  # it was silently ignored
            raise ValueError(f"pooling is a field of the embeddings module (task None); this module's task is "
                             f"{self.task!r}, whose results it does not change: leave it out")
        if not isinstance(split_char, str) or not split_char:
            raise ValueError(f"split_char must be a non-empty string, got {split_char!r}")
        check_text(split_char, "split_char", max_chars)
        if self.task == "reading-comprehension":
            self._check_windows(data, max_seq_len)
        return ServingRequest(data, batch_size, {"max_seq_len": max_seq_len, "split_char": split_char,
                                                 "use_gpu": f["use_gpu"], "return_prob": f["return_prob"]})

    def _check_windows(self, data, max_seq_len: int) -> None:
        """A reading-comprehension request runs a window per doc_stride of each context: at most
        max_serving_texts windows a request (huge contexts held the module for minutes)."""
        windows, stride = windows_needed(data, max_seq_len)
        if windows > self.max_serving_texts:
            raise ValueError(f"the contexts of this request need up to {windows} windows of max_seq_len={max_seq_len} "
                             f"(doc stride {stride}); at most {self.max_serving_texts} per request: send shorter "
                             f"contexts or fewer examples")

    def run_request(self, data, batch_size: int, max_seq_len: int = 128, use_gpu: bool = False,
                    split_char: str = "\002", return_prob: bool = False, pooling: str = "cls"):
        """A checked request's results (predict, or get_embedding for task None): the ServingRequest's
        data, batch_size and settings."""
        if self.task is None:
            return self.get_embedding(data, max_seq_len=max_seq_len, batch_size=batch_size, pooling=pooling,
                                      use_gpu=use_gpu)
        return self.predict(data, max_seq_len=max_seq_len, split_char=split_char, batch_size=batch_size,
                            use_gpu=use_gpu, return_prob=return_prob)

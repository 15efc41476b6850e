"""The PaddleHub adapter behind the `chinese-electra-small` / `chinese-electra-base` hub modules.

A hub module is `@moduleinfo(...) class X(ElectraHubModule): variant = "<registry name>"`; everything
else lives here, once. The API is PaddleHub 2.4's for transformer modules (constructor, `predict`,
`get_embedding`, `get_tokenizer`, `training_step` / `validation_step` for `hub.Trainer`, the
`@serving` method for `hub serving`), with the bugs of PaddleHub's own ELECTRA modules fixed:

- tasks: None (embeddings), seq-cls, token-cls, text-matching, and reading-comprehension (new);
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

The server (`python -m paddle_electra.hub serving start ...`) is paddle_electra.serving.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import weakref
from typing import Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddlehub.module.module import serving
from paddlehub.module.nlp_module import TransformerModule
from paddlenlp.transformers import ElectraTokenizer as _PaddleNLPElectraTokenizer

from . import runtime
from .io import CheckpointError, load_pdparams
from .modeling_utils import load_state_strict
from .resolve import resolve
from .config import CONFIG_NAME, ElectraConfig, get_variant
from .finetuning import qa
from .heads import TASK_HEADS, normalize_label_map
from .modeling import ElectraModel
from .tokenizer import ElectraTokenizer, bundled_vocab_path

logger = logging.getLogger(__name__)

TASKS = (None, "seq-cls", "token-cls", "text-matching", "reading-comprehension")
# PaddleHub 2.0's spelling, still accepted by its modules (with a warning)
_TASK_ALIASES = {"sequence_classification": "seq-cls", "token_cls": "token-cls"}
IGNORE_LABEL = -100  # label of positions that do not count (padding), PaddleHub's datasets' default


class HubTokenizer(_PaddleNLPElectraTokenizer):
    """What `get_tokenizer()` returns: PaddleHub's datasets (ChnSentiCorp, MSRA_NER, LCQMC, ...) accept
    only PaddleNLP tokenizers, so this is one, but every word is split by paddle_electra's tokenizer
    (the original's FullTokenizer; PaddleNLP's ElectraTokenizer splits symbols differently)."""

    def __init__(self, vocab_file: Optional[str] = None, **kwargs):
        vocab_file = vocab_file or bundled_vocab_path()
        # lower-casing is done (after accent stripping, as the original) by the backend below;
        # PaddleNLP would otherwise lower-case before it
        super().__init__(vocab_file, do_lower_case=False, **kwargs)
        self.backend_tokenizer = ElectraTokenizer(vocab_file)

    def _tokenize(self, text, **kwargs):
        return self.backend_tokenizer.tokenize(text)


# --- request / input checking ------------------------------------------------------------------
def _type(x) -> str:
    return type(x).__name__


def check_int(name: str, value, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_type(value)} {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}" if hi is not None
                         else f"{name} must be >= {lo}, got {value}")
    return int(value)


def check_data(data, task: Optional[str], max_texts: Optional[int] = None,
               max_chars: Optional[int] = None) -> List[List[str]]:
    """PaddleHub's input shape `[[text_a], [text_a, text_b], ...]` checked for `task`; returns a copy."""
    want = {None: (1, 2), "seq-cls": (1, 2), "token-cls": (1,), "text-matching": (2,),
            "reading-comprehension": (2,)}[task]
    shape = {(1, 2): "[[text], ...] or [[text_a, text_b], ...]", (1,): "[[text], ...]",
             (2,): "[[context, question], ...]" if task == "reading-comprehension" else "[[text_a, text_b], ...]"}[want]
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
            if not text.strip():
                raise ValueError(f"data[{i}][{j}] is empty")
            if max_chars is not None and len(text) > max_chars:
                raise ValueError(f"data[{i}][{j}] has {len(text)} characters; at most {max_chars} per text")
        out.append([str(t) for t in item])
    return out


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


def _pad(rows: Sequence[Sequence[int]], value: int = 0) -> np.ndarray:
    out = np.full((len(rows), max(len(r) for r in rows)), value, dtype="int64")
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def join_pairs(query_ids: np.ndarray, title_ids: np.ndarray, pad_id: int, max_len: int):
    """PaddleHub's text-matching batches hold the two texts encoded apart ([CLS] a [SEP], [CLS] b [SEP],
    padded); the model reads them as one pair `[CLS] a [SEP] b [SEP]`, as the original's sentence-pair
    tasks do. Longer side trimmed first when the pair exceeds max_len."""
    ids, types = [], []
    for q, t in zip(query_ids, title_ids):
        a = [x for x in q[1:] if x != pad_id][:-1]  # text a without [CLS] / [SEP] / padding
        b = [x for x in t[1:] if x != pad_id][:-1]
        while len(a) + len(b) + 3 > max_len:
            (a if len(a) >= len(b) else b).pop()
        cls_id, sep_id = int(q[0]), int([x for x in q if x != pad_id][-1])
        ids.append([cls_id] + a + [sep_id] + b + [sep_id])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
    return _pad(ids, pad_id), _pad(types, 0)


# --- the module ----------------------------------------------------------------------------------
class ElectraHubModule(nn.Layer, TransformerModule):
    """Base of the ELECTRA hub modules; subclasses set `variant` (a registry name)."""

    variant: str = None
    _tasks_supported = [t for t in TASKS if t]

    def __init__(self, task: Optional[str] = None, load_checkpoint: Optional[str] = None,
                 label_map=None, num_classes: int = 2, suffix: bool = False, *,
                 use_fast_path: bool = True, precision: str = "fp32", num_threads: Optional[int] = None,
                 ignore_label: int = IGNORE_LABEL, max_serving_texts: int = 256,
                 max_serving_chars: int = 10000, **kwargs):
        super().__init__()
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(kwargs))}; accepted: "
                            "task, load_checkpoint, label_map, num_classes, suffix, use_fast_path, precision, "
                            "num_threads, ignore_label, max_serving_texts, max_serving_chars")
        if task in _TASK_ALIASES:
            logger.warning("task %r is PaddleHub 2.0's name; use %r", task, _TASK_ALIASES[task])
            task = _TASK_ALIASES[task]
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(map(repr, TASKS))}")
        if self.variant is None:
            raise TypeError("ElectraHubModule is a base class: a hub module sets `variant`")
        if label_map is not None and task in (None, "reading-comprehension"):
            raise ValueError(f"label_map is for seq-cls, token-cls and text-matching, not task {task!r}")
        self.task = task
        self.suffix = bool(suffix)
        self.ignore_label = int(ignore_label)
        self.max_serving_texts = check_int("max_serving_texts", max_serving_texts, 1)
        self.max_serving_chars = check_int("max_serving_chars", max_serving_chars, 1)
        self.use_fast_path, self.precision, self.num_threads = bool(use_fast_path), precision, num_threads
        self._predictor = None
        self._warned_truncation = False
        labels = labels_from_label_map(label_map, num_classes) if task in ("seq-cls", "token-cls",
                                                                           "text-matching") else None
        self.model, source = self._load(task, load_checkpoint, labels, label_map is not None)
        # the dir holding exactly these weights (for the fast path); not so with a new head
        self._weights_dir = source if self.model.load_report and self.model.load_report.complete else None
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

    def _load(self, task, load_checkpoint, labels, labels_given):
        """-> (model, the from_pretrained dir it was loaded from, or None for a .pdparams)."""
        cls = TASK_HEADS[task] if task else ElectraModel
        if load_checkpoint is not None:
            if not isinstance(load_checkpoint, (str, os.PathLike)):
                raise TypeError(f"load_checkpoint must be a path, got {_type(load_checkpoint)}")
            path = os.fspath(load_checkpoint)
            if not os.path.exists(path):
                raise FileNotFoundError(f"load_checkpoint {path!r} does not exist")
            if os.path.isdir(path):
                kw = {}
                if labels is not None and (labels_given or not self._fine_tuned_for(cls, path)):
                    kw["id2label"] = labels  # else the dir's own label map
                return cls.from_pretrained(path, **kw), path
            if path.endswith(".pdparams"):
                return self._load_pdparams(cls, path, labels), None
            raise ValueError(f"load_checkpoint {path!r}: expected a from_pretrained dir (config.json + "
                             f"model.safetensors) or a PaddleHub .pdparams file")
        kw = {"id2label": labels} if labels is not None else {}
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

    def _load_pdparams(self, cls, path, labels):
        """A state dict saved by hub.Trainer (this module's keys, `model.` prefix) or of the bare task
        model. The backbone's shapes come from the base weights' config when present, else the registry."""
        try:
            config = ElectraConfig.from_json_file(os.path.join(resolve(self.variant, download=False), CONFIG_NAME))
        except FileNotFoundError:
            config = get_variant(self.variant).discriminator
        model = cls(config, id2label=labels) if labels is not None else cls(config)
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

    def train(self, mode: bool = True):
        if mode:  # the fast path runs a copy of the weights: training makes it stale
            self._predictor, self._weights_dir = None, None
        return super().train(mode)

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
                from .inference import ElectraPredictor
            except ImportError:
                self.use_fast_path = False
                return None
            if self._weights_dir is None:
                # weights that exist only here (a new head, a .pdparams, after training): the predictor
                # reads a from_pretrained dir, so write them once, for as long as this module lives
                tmp = tempfile.mkdtemp(prefix="paddle-electra-hub-")
                self._tmp_cleanup = weakref.finalize(self, shutil.rmtree, tmp, True)
                self._weights_dir = self.save_pretrained(os.path.join(tmp, "model"))
            self._predictor = ElectraPredictor.from_pretrained(
                self._weights_dir, task=self.task, precision=self.precision, num_threads=self.num_threads,
                device="cpu")
        return self._predictor

    def _run(self, feats: Sequence[Dict[str, List[int]]], batch_size: int, use_gpu: bool,
             backbone: bool = False) -> List[tuple]:
        """Model outputs for each feature (input_ids [+ token_type_ids]): a tuple of numpy arrays per
        feature, whose length axes may hold padding past the feature's length (callers cut them).
        Features are grouped by length, so little padding is computed."""
        self._set_device(use_gpu)
        self.eval()
        fast = None if backbone and self.task is not None else self._fast_path(use_gpu)
        types = [f.get("token_type_ids") or [0] * len(f["input_ids"]) for f in feats]
        if fast is not None:  # it groups by length too, and trims the outputs to each sequence
            res = fast.predict_batches([f["input_ids"] for f in feats], types, batch_size=batch_size)
            return [r if isinstance(r, tuple) else (r,) for r in res]
        model = self.backbone if backbone else self.model
        order = sorted(range(len(feats)), key=lambda i: len(feats[i]["input_ids"]))
        out = [None] * len(feats)
        for k in range(0, len(order), batch_size):
            idx = order[k:k + batch_size]
            ids = _pad([feats[i]["input_ids"] for i in idx], self.config.pad_token_id)
            mask = _pad([[1] * len(feats[i]["input_ids"]) for i in idx])
            with paddle.no_grad():
                res = model(paddle.to_tensor(ids), paddle.to_tensor(_pad([types[i] for i in idx])),
                            paddle.to_tensor(mask))
            res = [r.numpy() for r in (res if isinstance(res, (tuple, list)) else (res,))]
            for row, i in enumerate(idx):
                out[i] = tuple(r[row] for r in res)
        return out

    def _encode(self, examples: List[List[str]], max_seq_len: int) -> List[Dict[str, List[int]]]:
        """[CLS] a [SEP] (b [SEP]) ids; longer than max_seq_len: truncated, longer text first (the
        original's rule), with one warning per module."""
        feats = [None] * len(examples)
        for n in (1, 2):
            group = [i for i, ex in enumerate(examples) if len(ex) == n]
            if not group:
                continue
            a = [examples[i][0] for i in group]
            b = [examples[i][1] for i in group] if n == 2 else None
            enc = self.tokenizer(a, b)
            long = [j for j, ids in enumerate(enc["input_ids"]) if len(ids) > max_seq_len]
            if long:
                if not self._warned_truncation:
                    logger.warning("texts longer than max_seq_len=%d tokens are truncated (longer text first); "
                                   "this warning is shown once", max_seq_len)
                    self._warned_truncation = True
                cut = self.tokenizer([a[j] for j in long], [b[j] for j in long] if b else None,
                                     max_length=max_seq_len, truncation=True)
                for k, j in enumerate(long):
                    enc["input_ids"][j], enc["token_type_ids"][j] = cut["input_ids"][k], cut["token_type_ids"][k]
            for j, i in enumerate(group):
                feats[i] = {"input_ids": enc["input_ids"][j], "token_type_ids": enc["token_type_ids"][j]}
        return feats

    def _check_run_args(self, max_seq_len, batch_size):
        check_int("max_seq_len", max_seq_len, 3, self.config.max_position_embeddings)
        check_int("batch_size", batch_size, 1)

    # --- PaddleHub's API --------------------------------------------------------------------------
    def predict(self, data, max_seq_len: int = 128, split_char: str = "\002", batch_size: int = 1,
                use_gpu: bool = False, return_prob: bool = False):
        """seq-cls / text-matching: a label per example; token-cls: a label per input character (or
        per `split_char`-separated token); reading-comprehension ([[context, question], ...]):
        {"answer", "start", "end", "score"} per example with context[start:end] == answer; task None:
        the embeddings of get_embedding. With return_prob, (results, probabilities)."""
        examples = check_data(data, self.task)
        self._check_run_args(max_seq_len, batch_size)
        if not isinstance(return_prob, bool):
            raise TypeError(f"return_prob must be true or false, got {_type(return_prob)}")
        if self.task is None:
            return self.get_embedding(examples, max_seq_len=max_seq_len, batch_size=batch_size, use_gpu=use_gpu)
        if self.task == "token-cls":
            if not isinstance(split_char, str) or not split_char:
                raise ValueError(f"split_char must be a non-empty string, got {split_char!r}")
            labels, probs = self._predict_tokens([ex[0] for ex in examples], max_seq_len, split_char,
                                                 batch_size, use_gpu)
        elif self.task == "reading-comprehension":
            return self._predict_spans(examples, max_seq_len, batch_size, use_gpu)
        else:
            outs = self._run(self._encode(examples, max_seq_len), batch_size, use_gpu)
            probs = [_softmax(o[0]) for o in outs]
            labels = [self.labels[int(np.argmax(p))] for p in probs]
            probs = [p.tolist() for p in probs]
        return (labels, probs) if return_prob else labels

    def get_embedding(self, data, max_seq_len: int = 128, batch_size: int = 1, pooling: str = "cls",
                      use_gpu: bool = False):
        """Per example, [pooled_vector, token_vectors]: the vectors of its real tokens ([CLS] ... [SEP],
        no padding) and their [CLS] row ("cls", what ELECTRA's classifiers read) or mean ("mean")."""
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        examples = check_data(data, None)
        self._check_run_args(max_seq_len, batch_size)
        feats = self._encode(examples, max_seq_len)
        results = []
        for f, (seq,) in zip(feats, self._run(feats, batch_size, use_gpu, backbone=True)):
            seq = seq[:len(f["input_ids"])]
            pooled = seq[0] if pooling == "cls" else seq.mean(axis=0)
            results.append([pooled.tolist(), seq.tolist()])
        return results

    # token-cls: a label per character or per split_char token
    def _units(self, text: str, split_char: str):
        """Word pieces of `text` and, per input unit (a character, or a split_char token), the index of
        its first piece (-1: the unit has none, e.g. whitespace) and whether it continues a piece an
        earlier character started (a B- label becomes I- there)."""
        if split_char in text:
            words = text.split(split_char)
            pieces = [p[1:-1] for p in self.tokenizer(words)["input_ids"]]
            ids, first = [], []
            for p in pieces:
                first.append(len(ids) if p else -1)
                ids.extend(p)
            return ids, first, [False] * len(words)
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"][1:-1], enc["offset_mapping"][1:-1]
        first, cont = [-1] * len(text), [False] * len(text)
        for t, (s, e) in enumerate(offsets):
            for c in range(s, e):
                if first[c] == -1:
                    first[c], cont[c] = t, c > s
        return ids, first, cont

    def _inside_label(self, label: str) -> str:
        if self.suffix:
            return label[:-2] + "-I" if label.endswith("-B") else label
        return "I-" + label[2:] if label.startswith("B-") else label

    def _predict_tokens(self, texts, max_seq_len, split_char, batch_size, use_gpu):
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        units, feats, where = [], [], []  # where: (text index, window start, window length, flags)
        for ti, text in enumerate(texts):
            ids, first, cont = self._units(text, split_char)
            units.append((ids, first, cont))
            spans = qa.doc_spans(len(ids), max_seq_len - 2, max(1, (max_seq_len - 2) // 2)) if ids else []
            for si, (s, n) in enumerate(spans):
                feats.append({"input_ids": [cls_id] + ids[s:s + n] + [sep_id]})
                where.append((ti, s, n, qa.max_context_flags(spans, si)))
        outs = self._run(feats, batch_size, use_gpu) if feats else []
        token_probs = [[None] * len(u[0]) for u in units]
        for (ti, s, n, flags), (logits,) in zip(where, outs):
            p = _softmax(logits[1:n + 1])
            for k in range(n):
                if flags[k]:
                    token_probs[ti][s + k] = p[k]
        no_entity = "O" if "O" in self.labels else None
        labels, probs = [], []
        for (ids, first, cont), tp in zip(units, token_probs):
            lab, pr = [], []
            for f, c in zip(first, cont):
                if f < 0:
                    lab.append(no_entity)
                    pr.append(None)
                    continue
                name = self.labels[int(np.argmax(tp[f]))]
                lab.append(self._inside_label(name) if c else name)
                pr.append(tp[f].tolist())
            labels.append(lab)
            probs.append(pr)
        return labels, probs

    # reading comprehension
    def _predict_spans(self, examples, max_seq_len, batch_size, use_gpu):
        stride = min(qa.DOC_STRIDE, max(1, max_seq_len // 4))
        feats, owner = [], []
        for ei, (context, question) in enumerate(examples):
            try:
                fs = qa.featurize_qa(self.tokenizer, question, context, max_seq_length=max_seq_len,
                                     doc_stride=stride, example_index=ei)
            except ValueError as e:
                raise ValueError(f"data[{ei}]: {e} (raise max_seq_len or shorten the question)") from None
            feats.extend(fs)
            owner.extend([ei] * len(fs))
        outs = self._run([{"input_ids": f.input_ids, "token_type_ids": f.token_type_ids} for f in feats],
                         batch_size, use_gpu)
        names = qa.SIMPLE_OUTPUT_NAMES if self.model.simple else qa.JOINT_OUTPUT_NAMES
        results = []
        for ei, (context, _) in enumerate(examples):
            mine = [i for i, o in enumerate(owner) if o == ei]
            rows = [dict(zip(names, outs[i])) for i in mine]
            best = qa.postprocess_qa([feats[i] for i in mine], rows, context)[0]
            results.append({"answer": best["text"], "start": int(best["start"]), "end": int(best["end"]),
                            "score": float(best["probability"])})
        return results

    # --- training with hub.Trainer ----------------------------------------------------------------
    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, attention_mask=None,
                query_input_ids=None, query_token_type_ids=None, query_position_ids=None,
                query_attention_mask=None, title_input_ids=None, title_token_type_ids=None,
                title_position_ids=None, title_attention_mask=None, seq_lengths=None, labels=None,
                start_positions=None, end_positions=None):
        """PaddleHub's keyword interface. Returns probabilities (task None: the sequence output;
        reading comprehension: the head's outputs), or with labels / start_positions
        (outputs, loss, metrics)."""
        pad = self.config.pad_token_id
        if query_input_ids is not None:  # PaddleHub's text-matching layout
            if self.task != "text-matching":
                raise ValueError(f"query/title inputs are for task 'text-matching', not {self.task!r}")
            ids, types = join_pairs(query_input_ids.numpy(), title_input_ids.numpy(), pad,
                                    self.config.max_position_embeddings)
            input_ids, token_type_ids = paddle.to_tensor(ids), paddle.to_tensor(types)
            position_ids = attention_mask = None
        if input_ids is None:
            raise ValueError("forward needs input_ids (or query_input_ids and title_input_ids)")
        if attention_mask is None:  # PaddleHub's datasets pad with [PAD] and pass no mask
            attention_mask = (input_ids != pad).astype("int64")
        if self.task is None:
            return self.model(input_ids, token_type_ids, attention_mask, position_ids)
        if self.task == "reading-comprehension":
            if start_positions is None:
                return self.model(input_ids, token_type_ids, attention_mask, position_ids)
            outputs = self.model(input_ids, token_type_ids, attention_mask, position_ids, start_positions=start_positions)
            loss = self.model.loss(outputs, start_positions, end_positions)
            sp = start_positions.reshape([-1]).astype("int64")
            ep = end_positions.reshape([-1]).astype("int64")
            hit = (outputs[0].argmax(axis=-1) == sp) & (outputs[1].argmax(axis=-1) == ep)
            return outputs, loss, {"span_acc": float(hit.astype("float32").mean())}
        logits = self.model(input_ids, token_type_ids, attention_mask, position_ids)
        probs = F.softmax(logits, axis=-1)
        if labels is None:
            return probs
        if self.task == "token-cls":
            labels = labels.reshape(logits.shape[:2]).astype("int64")
            labels = paddle.where(labels == self.ignore_label, paddle.full_like(labels, -100), labels)
            loss = self.model.loss(logits, labels)
            return probs, loss, {"f1_score": self._chunk_f1(logits, labels, attention_mask)}
        labels = labels.reshape([-1]).astype("int64")
        loss = self.model.loss(logits, labels)
        acc = (logits.argmax(axis=-1) == labels).astype("float32").mean()
        return probs, loss, {"acc": float(acc)}

    def _chunk_f1(self, logits, labels, attention_mask) -> float:
        """Entity F1 of one batch (PaddleNLP's ChunkEvaluator, as PaddleHub); ignored positions count
        as outside any entity."""
        from paddlenlp.metrics import ChunkEvaluator
        outside = len(self.labels)  # an extra id meaning "O" at ignored positions
        lab = labels.numpy()
        pred = logits.argmax(axis=-1).numpy()
        pred[lab == -100] = outside
        lab[lab == -100] = outside
        metric = ChunkEvaluator(label_list=self.labels + ["O"], suffix=self.suffix)
        lengths = attention_mask.astype("int64").sum(axis=-1).numpy()
        n_infer, n_label, n_correct = metric.compute(lengths=lengths, predictions=paddle.to_tensor(pred),
                                                     labels=paddle.to_tensor(lab))
        metric.update(n_infer.numpy(), n_label.numpy(), n_correct.numpy())
        return float(metric.accumulate()[2])

    def _step(self, batch, batch_idx):
        if self.task is None:
            raise RuntimeError("task None (embeddings) has nothing to train; create the module with a task")
        b = list(batch)
        if self.task == "seq-cls" or (self.task == "text-matching" and len(b) == 3):
            return self(input_ids=b[0], token_type_ids=b[1], labels=b[2])
        if self.task == "token-cls":  # PaddleHub: input_ids, token_type_ids, seq_len, labels
            return self(input_ids=b[0], token_type_ids=b[1], seq_lengths=b[2], labels=b[3])
        if self.task == "text-matching":  # query ids, query types, title ids, title types, labels
            return self(query_input_ids=b[0], query_token_type_ids=b[1], title_input_ids=b[2],
                        title_token_type_ids=b[3], labels=b[4])
        # reading comprehension: input_ids, token_type_ids, start_positions, end_positions
        return self(input_ids=b[0], token_type_ids=b[1], start_positions=b[2], end_positions=b[3])

    def training_step(self, batch, batch_idx: int):
        _, loss, metrics = self._step(batch, batch_idx)
        return {"loss": loss, "metrics": metrics}

    def validation_step(self, batch, batch_idx: int):
        _, loss, metrics = self._step(batch, batch_idx)
        return {"loss": float(loss), "metrics": metrics}

    # --- serving ------------------------------------------------------------------------------------
    @serving
    def predict_method(self, data=None, max_seq_len: int = 128, batch_size: int = 32, use_gpu: bool = False,
                       split_char: str = "\002", return_prob: bool = False, pooling: str = "cls", **extra):
        """`POST /predict/<name>` with {"data": [[...], ...], ...}: every argument by keyword (PaddleHub's
        own passed batch_size into split_char), requests checked against the server's limits.
        paddle_electra.serving's server calls check_request and run_request itself, so that requests that
        wait together share model calls."""
        data, batch_size, kwargs = self.check_request(data, max_seq_len, batch_size, use_gpu, split_char,
                                                      return_prob, pooling, **extra)
        return self.run_request(data, batch_size, **kwargs)

    def check_request(self, data=None, max_seq_len: int = 128, batch_size: int = 32, use_gpu: bool = False,
                      split_char: str = "\002", return_prob: bool = False, pooling: str = "cls", **extra):
        """A serving request's fields checked -> (data, batch_size, the other arguments of run_request)."""
        if extra:
            raise ValueError(f"unknown request field(s): {', '.join(sorted(extra))}; accepted: data, max_seq_len, "
                             f"batch_size, use_gpu, split_char, return_prob, pooling")
        if data is None:
            raise ValueError('the request has no "data" field: send {"data": [["text"], ...]}')
        check_data(data, self.task, max_texts=self.max_serving_texts, max_chars=self.max_serving_chars)
        check_int("batch_size", batch_size, 1, self.max_serving_texts)
        self._check_run_args(max_seq_len, batch_size)
        if not isinstance(return_prob, bool):
            raise TypeError(f"return_prob must be true or false, got {_type(return_prob)}")
        if self.task is None:
            if pooling not in ("cls", "mean"):
                raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
            return data, batch_size, {"max_seq_len": max_seq_len, "pooling": pooling, "use_gpu": use_gpu}
        if not isinstance(split_char, str) or not split_char:
            raise ValueError(f"split_char must be a non-empty string, got {split_char!r}")
        return data, batch_size, {"max_seq_len": max_seq_len, "split_char": split_char, "use_gpu": use_gpu,
                                  "return_prob": return_prob}

    def run_request(self, data, batch_size, **kwargs):
        """A checked request's results (predict, or get_embedding for task None)."""
        if self.task is None:
            return self.get_embedding(data, batch_size=batch_size, **kwargs)
        return self.predict(data, batch_size=batch_size, **kwargs)


class ReadingComprehensionDataset(paddle.io.Dataset):
    """Training records for task reading-comprehension in the PaddleHub dataset style (PaddleHub has
    none): a SQuAD-format file (CMRC 2018, DRCD) or its parsed dict -> one record per window,
    (input_ids, token_type_ids, start_position, end_position) padded to max_seq_len; positions 0
    ([CLS]) when the window does not hold the answer, as the original. `tokenizer` is the module's
    get_tokenizer() (or a paddle_electra ElectraTokenizer)."""

    def __init__(self, squad, tokenizer, max_seq_len: int = 512, doc_stride: int = qa.DOC_STRIDE):
        if isinstance(squad, (str, os.PathLike)):
            with open(squad, encoding="utf-8") as f:
                squad = json.load(f)
        tok = getattr(tokenizer, "backend_tokenizer", tokenizer)
        self.records, self.skipped = [], 0
        for article in squad["data"]:
            for para in article["paragraphs"]:
                for q in para["qas"]:
                    answer = q["answers"][0]
                    try:
                        feats = qa.featurize_qa(tok, q["question"], para["context"], max_seq_length=max_seq_len,
                                                doc_stride=doc_stride, answer_text=answer["text"],
                                                answer_start=answer["answer_start"])
                    except qa.AnswerNotFound:
                        self.skipped += 1
                        continue
                    for f in feats:
                        pad = [0] * (max_seq_len - len(f.input_ids))
                        self.records.append((np.array(f.input_ids + pad, dtype="int64"),
                                             np.array(f.token_type_ids + pad, dtype="int64"),
                                             np.array(f.start_position, dtype="int64"),
                                             np.array(f.end_position, dtype="int64")))
        if self.skipped:
            logger.warning("%d questions skipped: their answer is not in the context", self.skipped)

    def __getitem__(self, idx):
        return self.records[idx]

    def __len__(self):
        return len(self.records)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float64")
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype("float32")


if __name__ == "__main__":  # `python -m paddle_electra.hub serving start ...`: paddle_electra.serving
    from .serving import main
    sys.exit(main())

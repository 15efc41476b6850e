"""The last stage: ElectraPredictor, an exported graph run by the engine the choice gives (choice.py), with
its inputs checked and many sequences length-bucketed.

    pred = ElectraPredictor.from_pretrained(model_dir, task="seq-cls", precision="bf16")
    logits = pred(input_ids, token_type_ids, attention_mask)          # numpy in, numpy out
    per_example = pred.predict_batches(list_of_id_lists)              # length-bucketed, input order

Tasks: those of the task registry (paddle_electra.tasks): None (the backbone: sequence output
[B, S, H]), "discriminator" (RTD logits [B, S]), "generator" (MLM logits [B, S, V]), "seq-cls",
"text-matching", "text-regression", "token-cls", "reading-comprehension", each returning what the
dygraph model's forward returns, as numpy arrays.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import runtime
from ..batching import run_bucketed
from ..config import ElectraConfig
from ..resolve import resolve
from ..tasks import get_spec
from ..tokenizer import ElectraTokenizer
from . import onnxruntime as ort_engine, openvino as ov_engine, paddle as paddle_engine
from .cache import InferenceError, read_meta
from .choice import auto_engine, choose_engine, record_engine
from .paddle import CPU_EXTRA_PASSES, DEFAULT_ONEDNN_CACHE_CAPACITY, cpu_supports_bf16, gpu_available
from .static_export import INPUT_NAMES, exported_model, model_config

# the length bucketing pads each batch up to a multiple of this (fewer distinct shapes)
DEFAULT_PAD_MULTIPLE = 16
# the ONNX engines: the graph each runs (made on first use) and its runner
_ONNX_ENGINES = {"onnxruntime": (ort_engine.graph, ort_engine.OrtRunner),
                 "openvino": (ov_engine.graph, ov_engine.OpenVinoRunner)}


class ElectraPredictor:
    """An exported ELECTRA graph run by an engine (choose_engine): Paddle Inference, ONNX Runtime or OpenVINO,
    the same outputs from each. Calls are serialised by a lock (one predictor runs one batch at a time);
    use several predictors for parallel requests."""

    def __init__(self, export_dir: str, config: ElectraConfig, task: Optional[str] = None,
                 precision: str = "fp32", num_threads: Optional[int] = None, device: Optional[str] = None,
                 use_tensorrt: bool = False, onednn_cache_capacity: int = DEFAULT_ONEDNN_CACHE_CAPACITY,
                 extra_passes: Sequence[str] = CPU_EXTRA_PASSES, meta: Optional[Dict] = None,
                 engine: Optional[str] = "auto", remeasure: bool = False):
        self.device = device or ("gpu" if gpu_available() else "cpu")
        self.engine, self.engine_reason = choose_engine(engine, precision, self.device)
        if use_tensorrt and self.engine != "paddle":
            raise ValueError(f"use_tensorrt=True is a Paddle Inference setting; not with engine={self.engine!r}")
        self.export_dir, self.config, self.task, self.precision = export_dir, config, task, precision
        self.spec = get_spec(task)
        self.meta = meta or read_meta(export_dir) or {}
        self.seq_axes = self.meta.get("seq_axes")
        self.min_seq_len = int(self.meta.get("min_seq_len", 1))
        self.num_threads = num_threads or runtime.default_num_threads(runtime.local_process_count())
        self.extra_passes = list(extra_passes)

        def load(name):
            return self._load(name, use_tensorrt, onednn_cache_capacity)
        if self.engine == "auto":
            self.engine, self.engine_reason, self.graph, self._run, self.meta = auto_engine(
                load, export_dir, self.meta, config, precision, self.device, self.num_threads, self.min_seq_len,
                remeasure)
        else:
            self.graph, self._run = load(self.engine)
        self._inputs = self._run.inputs
        if sorted(self._inputs) != sorted(INPUT_NAMES):
            raise InferenceError(f"{self.graph}: the graph takes {self._inputs}, expected {INPUT_NAMES}")
        self._outputs = self._run.outputs
        self._lock = threading.Lock()
        self.meta = record_engine(export_dir, self.meta, self.device, precision, self.engine, self.engine_reason,
                                  self.graph, task)

    def _load(self, engine: str, use_tensorrt: bool = False,
              onednn_cache_capacity: int = DEFAULT_ONEDNN_CACHE_CAPACITY) -> Tuple[str, object]:
        """(graph file, runner) of `engine` for this predictor's precision; ONNX graphs made on first use."""
        if engine == "paddle":
            return paddle_engine.graph(self.export_dir), paddle_engine.PaddleRunner(
                self.export_dir, self.device, self.precision, self.num_threads, self.config.max_position_embeddings,
                use_tensorrt, onednn_cache_capacity, self.extra_passes)
        graph_of, runner = _ONNX_ENGINES[engine]
        try:
            graph = graph_of(self.export_dir, self.meta, self.config, self.precision)
        except OSError as e:  # e.g. a cache folder that became read-only after the export
            raise InferenceError(f"{self.export_dir}: cannot write the {engine} graph there "
                                 f"({e.strerror or e}); use engine='paddle'") from e
        try:
            return graph, runner(graph, self.num_threads, self.precision)
        except Exception as e:  # noqa: BLE001 - the engine's own error types
            raise InferenceError(f"{engine} cannot load {graph}: {type(e).__name__}: {e}") from e

    @classmethod
    def from_pretrained(cls, model_dir: str, task: Optional[str] = None, precision: str = "fp32",
                        num_threads: Optional[int] = None, device: Optional[str] = None,
                        use_tensorrt: bool = False, rebuild: bool = False, engine: Optional[str] = "auto",
                        remeasure: bool = False, **kwargs) -> "ElectraPredictor":
        """Predictor for a from_pretrained dir (or registered variant name): exports the graph on first
        use (or when the weights changed) and loads it. `device`: "cpu", "gpu", "gpu:1"; default the
        GPU when there is one. `engine`: "auto" (choose_engine's rule: on CPU the fastest of the engines
        installed here that run the precision, measured on this model once and recorded; `remeasure=True`
        times them again; $PADDLE_ELECTRA_ENGINE overrides it), "paddle", "onnxruntime", "openvino".
        `precision`: "fp32", "bf16" (Paddle Inference or OpenVINO on native-bf16 CPUs, Paddle on GPUs),
        "int8" (ONNX Runtime's run of the dynamically quantized ONNX graph)."""
        device = device or ("gpu" if gpu_available() else "cpu")
        chosen, _ = choose_engine(engine, precision, device)  # bad arguments fail before the export
        if precision == "bf16" and device == "cpu" and not cpu_supports_bf16():
            raise InferenceError(
                "precision='bf16' needs a CPU with native bf16 instructions (AVX512-BF16 or AMX-BF16); "
                "this CPU has neither (see the flags in /proc/cpuinfo). Use precision='fp32'.")
        model_dir = resolve(model_dir)
        export_dir, meta = exported_model(model_dir, task, rebuild=rebuild, writes_graphs=chosen != "paddle")
        return cls(export_dir, model_config(model_dir, task), task=task, precision=precision,
                   num_threads=num_threads, device=device, use_tensorrt=use_tensorrt, meta=meta, engine=engine,
                   remeasure=remeasure, **kwargs)

    # --- running ---
    def __call__(self, input_ids, token_type_ids=None, attention_mask=None):
        """input_ids [B, S] (and the others, same shape; token types default to 0, the mask to all
        ones as in dygraph) -> what the model's forward returns, as numpy arrays (a tuple for
        several outputs)."""
        ids = self._check("input_ids", input_ids, None)
        self._check_token_types(token_type_ids)
        types = np.zeros_like(ids) if token_type_ids is None else \
            self._check("token_type_ids", token_type_ids, ids.shape)
        mask = np.ones_like(ids) if attention_mask is None else \
            self._check("attention_mask", attention_mask, ids.shape)
        self._check_values(ids, types, mask)
        feeds = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
        with self._lock:
            outs = self._run(feeds)
        return outs[0] if len(outs) == 1 else outs

    @staticmethod
    def _check(name: str, value, shape) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except ValueError:
            raise ValueError(f"{name}: ragged lists; pad them to one length or use predict_batches") from None
        if arr.dtype == object:
            raise ValueError(f"{name}: ragged lists; pad them to one length or use predict_batches")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D [batch, seq_len], got shape {arr.shape}")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape} but input_ids has {shape}")
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _check_values(self, ids, types, mask):
        c = self.config
        B, S = ids.shape
        if B == 0 or S == 0:
            raise ValueError(f"input_ids is empty (shape {ids.shape})")
        if S > c.max_position_embeddings:
            raise ValueError(f"sequence length {S} exceeds max_position_embeddings {c.max_position_embeddings}")
        if S < self.min_seq_len:
            raise ValueError(f"task {self.task!r} needs sequences of at least {self.min_seq_len} tokens "
                             f"(the QA head's beam); pad input_ids to that length, got {S}")
        for name, arr, hi in (("input_ids", ids, c.vocab_size), ("token_type_ids", types, c.type_vocab_size),
                              ("attention_mask", mask, 2)):
            lo_v, hi_v = int(arr.min()), int(arr.max())
            if lo_v < 0 or hi_v >= hi:
                raise ValueError(f"{name} values must be in [0, {hi - 1}], got range [{lo_v}, {hi_v}]")

    def predict_batches(self, input_ids: Sequence[Sequence[int]],
                        token_type_ids: Optional[Sequence[Sequence[int]]] = None, batch_size: int = 32,
                        pad_multiple: int = DEFAULT_PAD_MULTIPLE, pad_id: Optional[int] = None) -> List:
        """Run many sequences of different lengths without computing padding: sort by length, cut into
        batches of `batch_size`, pad each batch only to its own longest sequence (rounded up to a
        multiple of `pad_multiple`, which bounds the number of distinct shapes), run, and return one
        result per sequence in input order, with the length axes trimmed back to the sequence's own
        length (an array, or a tuple of arrays for several outputs)."""
        self._check_token_types(token_type_ids)
        out = run_bucketed(self.__call__, input_ids, token_type_ids, batch_size, pad_id=self.config.pad_token_id
                           if pad_id is None else pad_id, pad_multiple=pad_multiple, min_len=self.min_seq_len,
                           max_len=self.config.max_position_embeddings, seq_axes=self.seq_axes)
        return [r[0] if len(r) == 1 else r for r in out]

    def _check_token_types(self, token_type_ids):
        if token_type_ids is None and self.spec.needs_token_types:
            raise ValueError(f"{self.task} needs token_type_ids: answers are searched in segment 1")

    def predict_texts(self, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
                      max_seq_length: int = 128, batch_size: int = 32, tokenizer=None) -> List:
        """Tokenize (the model dir's vocab, truncated to max_seq_length) and run predict_batches."""
        if tokenizer is None:
            tokenizer = ElectraTokenizer.from_pretrained(self.meta.get("source"))
        enc = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                        max_length=max_seq_length, truncation=True)
        return self.predict_batches(enc["input_ids"], enc["token_type_ids"], batch_size=batch_size)

    def __repr__(self):
        return (f"ElectraPredictor(task={self.task!r}, engine={self.engine!r}, precision={self.precision!r}, "
                f"device={self.device!r}, "
                f"num_threads={self.num_threads}, export_dir={self.export_dir!r})")

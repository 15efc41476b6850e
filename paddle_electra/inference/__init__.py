"""Fast inference: export a model to a static graph and run it with Paddle Inference, or convert that graph
to ONNX and run it with ONNX Runtime or OpenVINO. One file per stage of the pipeline:

    static_export.py   model folder + task -> exported static graph (task lookup, fingerprint, export)
    cache.py           the cache folder it lives in: install key, HMAC signature, derived files, export.json
    rewrites.py        the ONNX graphs derived from it: paddle2onnx, the fusion rewrites, int8 quantization
    paddle.py          engine "paddle": Paddle Inference (oneDNN fp32/bf16 on CPU, GPU, TensorRT)
    onnxruntime.py     engine "onnxruntime": model.fused.onnx (fp32), model.int8.onnx (int8)
    openvino.py        engine "openvino": model.onnx (f32)
    choice.py          which engine runs: choose_engine, the "auto" measurement and its record
    predictor.py       ElectraPredictor: the chosen engine behind input checks and length bucketing

    pred = ElectraPredictor.from_pretrained(model_dir, task="seq-cls", precision="bf16")
    logits = pred(input_ids, token_type_ids, attention_mask)          # numpy in, numpy out

The names below are this package's API. The modules that import Paddle (everything but cache.py and
choice.py) load on first use of one of their names, so that `import paddle_electra.inference` (the CLI's
argument parsers read ENGINES and PRECISIONS) stays free of Paddle's import time. docs/inference.md
describes the cache, the engines and what each setting is worth.
"""
from __future__ import annotations

import importlib

from .cache import (EXPORT_META, KEY_NAME, MODEL_PREFIX, ONNX_FUSED, ONNX_INT8, ONNX_PLAIN, SIGNATURE,
                    InferenceError)
from .choice import (AUTO_BATCH, AUTO_LENGTH, AUTO_MAX_ROUNDS, AUTO_SECONDS, AUTO_SETTLE, AUTO_SHORT, AUTO_SINGLES,
                     ENGINE_ENV, ENGINES, PRECISIONS, auto_candidates, choose_engine, measure_engines)

# name -> the module of this package that holds it (loaded on first use: it imports Paddle)
_LAZY = {
    **dict.fromkeys(("INPUT_NAMES", "EXPORT_FORMAT", "task_names", "model_config", "fingerprint", "load_dygraph",
                     "export", "exported_model", "fallback_cache_root"), "static_export"),
    **dict.fromkeys(("ONNX_OPSET", "onnx_graph", "export_onnx"), "rewrites"),
    **dict.fromkeys(("CPU_EXTRA_PASSES", "DEFAULT_ONEDNN_CACHE_CAPACITY", "cpu_supports_bf16", "gpu_available"),
                    "paddle"),
    **dict.fromkeys(("ElectraPredictor", "DEFAULT_PAD_MULTIPLE"), "predictor"),
}

__all__ = ["EXPORT_META", "KEY_NAME", "MODEL_PREFIX", "ONNX_FUSED", "ONNX_INT8", "ONNX_PLAIN", "SIGNATURE",
           "InferenceError", "AUTO_BATCH", "AUTO_LENGTH", "AUTO_MAX_ROUNDS", "AUTO_SECONDS", "AUTO_SETTLE",
           "AUTO_SHORT", "AUTO_SINGLES", "ENGINE_ENV", "ENGINES", "PRECISIONS", "auto_candidates", "choose_engine",
           "measure_engines", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

"""The engine choice, the one place the "auto" policy lives: which engine runs the exported graph.

`choose_engine` applies the rule (the argument, else $PADDLE_ELECTRA_ENGINE, else "auto": Paddle Inference
on GPU, and on CPU for each precision the engine installed here that runs it, or a measurement when several
are: fp32 Paddle Inference / ONNX Runtime / OpenVINO, bf16 Paddle Inference / OpenVINO, int8 ONNX Runtime);
`auto_engine` makes that measurement on the model at hand once per (model, CPU, threads,
package versions) and records it in export.json (`measure_engines` times the engines on a fixed
workload); `record_engine` writes the choice and its reason there and logs it once per process.
Figures measured on this project's machines are in docs/inference.md, not here: they differ from CPU
to CPU. This module imports no engine: checking which are installed imports their packages by name.
"""
from __future__ import annotations

import hashlib
import importlib
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..config import ElectraConfig
from ..cpu import cpu_info
from .cache import EXPORT_META, ONNX_FUSED, InferenceError, update_meta, versions

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
# "paddle": Paddle Inference (oneDNN on CPU, Paddle's GPU passes); "onnxruntime" / "openvino": the same graph
# converted to ONNX (paddle2onnx) and run by ONNX Runtime / OpenVINO on CPU; "auto": the rule of choose_engine()
ENGINES = ("auto", "paddle", "onnxruntime", "openvino")
ENGINE_ENV = "PADDLE_ELECTRA_ENGINE"
# the Python package each engine imports (and paddle2onnx, which makes their graph): pip names
_ENGINE_PACKAGES = {"onnxruntime": ("onnxruntime", "paddle2onnx"), "openvino": ("openvino", "paddle2onnx")}
# The workload of the measurement: one batch of AUTO_BATCH sequences of AUTO_LENGTH tokens and AUTO_SINGLES
# single sentences of AUTO_SHORT tokens (throughput and batch-1 latency, about equal parts).
AUTO_BATCH, AUTO_LENGTH, AUTO_SINGLES, AUTO_SHORT = 8, 128, 4, 32
# each engine is timed in rounds, the engines taking turns, until this many seconds per engine (at least 2
# rounds, at most AUTO_MAX_ROUNDS); its score is its fastest round
AUTO_SECONDS, AUTO_MAX_ROUNDS = 1.5, 5
# pause before each engine's turn: the threads of the engine before it (ONNX Runtime's pool, OpenMP) spin
# for a while after a run, and on a small machine would be timed as the next engine's cost
AUTO_SETTLE = 0.3
_announced = set()  # engine choices already logged by this process


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def require(engine: str) -> None:
    """ImportError naming the pip packages `engine` needs and lacks here."""
    missing = [m for m in _ENGINE_PACKAGES.get(engine, ()) if not importable(m)]
    if missing:
        raise ImportError(f"engine={engine!r} needs the Python package(s) {', '.join(missing)} "
                          f"(pip install {' '.join(missing)}); or use engine='paddle'")


# --- the rule -------------------------------------------------------------------------------------------
def auto_candidates(precision: str = "fp32") -> List[str]:
    """The engines installed here that run `precision` on CPU (what engine="auto" measures): fp32 on each;
    bf16 on Paddle Inference (oneDNN) and OpenVINO (its bf16 inference precision); int8 on ONNX Runtime
    (OpenVINO runs the dynamically quantized graph in f32: choose_engine)."""
    onnx = [e for e in ("onnxruntime", "openvino") if all(importable(m) for m in _ENGINE_PACKAGES[e])]
    runs = {"fp32": ("paddle", "onnxruntime", "openvino"), "bf16": ("paddle", "openvino"),
            "int8": ("onnxruntime",)}[precision]
    return [e for e in ["paddle", *onnx] if e in runs]


def choose_engine(engine: Optional[str] = "auto", precision: str = "fp32", device: str = "cpu") -> Tuple[str, str]:
    """(engine, why): `engine` when given (not "auto"), else $PADDLE_ELECTRA_ENGINE, else for "auto": Paddle
    Inference on GPU, the only engine installed here that runs the precision, or ("auto", ...) when several
    are: the predictor then measures them (auto_engine). Errors for combinations no engine here runs."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    engine = engine or "auto"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    env = os.environ.get(ENGINE_ENV, "").strip()
    if engine == "auto" and env and env != "auto":
        if env not in ENGINES:
            raise ValueError(f"${ENGINE_ENV} must be one of {ENGINES}, got {env!r}")
        engine, why = env, f"set by ${ENGINE_ENV}"
    elif engine != "auto":
        why = f"engine={engine!r} asked for"
    gpu = device.startswith("gpu")
    if engine == "auto":
        found = auto_candidates(precision)
        if gpu:
            engine, why = "paddle", "GPU: Paddle Inference (the ONNX engines run on CPU here)"
        elif precision == "int8" and not found:
            require("onnxruntime")
        elif len(found) == 1:
            engine = found[0]
            why = {"fp32": "the only fp32 engine installed here (onnxruntime and paddle2onnx, or openvino, are not: "
                           "pip install onnxruntime paddle2onnx)",
                   "bf16": "bf16: the only bf16 engine installed here, Paddle Inference's oneDNN (openvino is not: "
                           "pip install openvino)",
                   "int8": "int8: ONNX Runtime's dynamic int8 (the only int8 engine here)"}[precision]
        else:
            return "auto", f"measured among {', '.join(found)}"
    if engine != "paddle":
        if gpu:
            raise InferenceError(f"engine={engine!r} runs on CPU here; use engine='paddle' on {device}")
        if precision == "bf16" and engine != "openvino":
            raise ValueError(f"precision='bf16' runs on engine='paddle' (oneDNN bf16) or 'openvino', not {engine!r}")
        if precision == "int8" and engine == "openvino":
            # OpenVINO does read the dynamically quantized ONNX graph, but its runtime model runs every
            # FullyConnected layer in f32 on it (checked with get_runtime_model(), OpenVINO 2026.4): not int8
            raise ValueError("precision='int8' runs on engine='onnxruntime' only: OpenVINO compiles the dynamically "
                             "quantized graph to f32 matmuls (no int8 kernels), and its own int8 (NNCF static "
                             "quantization) is not built here")
        require(engine)
    elif precision == "int8":
        raise ValueError("precision='int8' is not available with engine='paddle' (Paddle's oneDNN int8 needs a "
                         "post-training-quantized program); use engine='onnxruntime' (dynamic int8)")
    return engine, why


# --- the measurement ------------------------------------------------------------------------------------
def _measure_key(precision: str, num_threads: int) -> Dict:
    """What a measurement holds for: the CPU, the threads and the engines' versions (not the date)."""
    info = cpu_info()
    return {"precision": precision, "cpu": info.describe(),
            "flags": hashlib.sha256(" ".join(sorted(info.flags)).encode()).hexdigest()[:16],
            "threads": num_threads, **versions("paddlepaddle", "paddlepaddle-gpu", "onnxruntime", "openvino",
                                               "paddle2onnx")}


def _workload(config: ElectraConfig, min_seq_len: int):
    """The measurement's inputs (fixed ids, no padding): a batch and the single sentences."""
    rng = np.random.default_rng(0)
    length = max(min(AUTO_LENGTH, config.max_position_embeddings), min_seq_len)
    short = max(min(AUTO_SHORT, config.max_position_embeddings), min_seq_len)

    def feeds(batch, n):
        ids = rng.integers(1, config.vocab_size, size=(batch, n), dtype=np.int64)
        return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}
    return feeds(AUTO_BATCH, length), [feeds(1, short) for _ in range(AUTO_SINGLES)]


def measure_engines(runners: Dict[str, object], config: ElectraConfig, min_seq_len: int = 1) -> Dict[str, Dict]:
    """Time each runner (name -> feeds -> outputs) on the workload, the engines taking turns (so that load
    from elsewhere falls on all of them alike): {name: {"batch_ms", "single_ms", "score_ms"}}, each the
    fastest of its rounds (at least 2, until AUTO_SECONDS per engine or AUTO_MAX_ROUNDS)."""
    batch, singles = _workload(config, min_seq_len)
    for run in runners.values():  # warm-up: first-call costs (oneDNN primitives, ORT allocations)
        run(batch)
        run(singles[0])
    best = {name: [float("inf"), float("inf")] for name in runners}
    spent = dict.fromkeys(runners, 0.0)
    for k in range(AUTO_MAX_ROUNDS):
        if k >= 2 and all(t >= AUTO_SECONDS for t in spent.values()):
            break
        for name, run in runners.items():
            time.sleep(AUTO_SETTLE)
            t0 = time.perf_counter()
            run(batch)
            t1 = time.perf_counter()
            for f in singles:
                run(f)
            t2 = time.perf_counter()
            best[name] = [min(best[name][0], t1 - t0), min(best[name][1], (t2 - t1) / len(singles))]
            spent[name] += t2 - t0
    return {name: {"batch_ms": round(b * 1e3, 2), "single_ms": round(s * 1e3, 2),
                   "score_ms": round((b + AUTO_SINGLES * s) * 1e3, 2)} for name, (b, s) in best.items()}


def _graph_note(engine: str, precision: str, meta: Dict) -> str:
    """What an engine runs, as the reason says it: the ONNX Runtime graph fused or not (and why not)."""
    if engine != "onnxruntime" or precision != "fp32":
        return engine
    fusion = ((meta.get("derived") or {}).get(ONNX_FUSED) or {}).get("fusion")
    if isinstance(fusion, dict) and fusion.get("Attention"):
        return "onnxruntime (fused graph)"
    return f"onnxruntime (unfused graph: {fusion if isinstance(fusion, str) else 'no attention fused'})"


def _slot(device: str, precision: str) -> str:
    return f"{device.split(':')[0]}-{precision}"


def auto_engine(load: Callable[[str], Tuple[str, object]], export_dir: str, meta: Dict, config: ElectraConfig,
                precision: str, device: str, num_threads: int, min_seq_len: int = 1, remeasure: bool = False):
    """engine="auto" with several engines installed: the one measured fastest on this model, CPU, thread
    count and package versions (the record in export.json, measured here on first use or with
    remeasure=True); an engine that fails to load (load(engine) -> (graph, runner)) is left out, and the
    reason says so. Returns (engine, reason, graph, runner, meta: export.json as it now is)."""
    key = _measure_key(precision, num_threads)
    slot = _slot(device, precision)
    record = (meta.get("engine_choice") or {}).get(slot)
    if not remeasure and record and record.get("measured_on") == key:
        try:
            graph, run = load(record["engine"])
            return record["engine"], record["reason"], graph, run, meta
        except InferenceError as e:
            logger.warning("%s: the engine measured fastest here, %s, does not load now (%s); measuring again",
                           export_dir, record["engine"], e)
    loaded, failed = {}, {}
    for engine in auto_candidates(precision):
        try:
            loaded[engine] = load(engine)
        except Exception as e:  # noqa: BLE001 - any engine's failure: measure the others
            failed[engine] = f"{type(e).__name__}: {e}"
            logger.warning("%s: engine %s left out of the auto choice: %s", export_dir, engine, failed[engine])
    if not loaded:
        raise InferenceError(f"{export_dir}: no engine loads ({failed})")
    left_out = "".join(f"; {e} left out ({why})" for e, why in failed.items())
    if len(loaded) == 1:
        (engine, (graph, run)), = loaded.items()
        return engine, f"auto: the only engine that loads here{left_out}", graph, run, meta
    logger.info("%s: timing the engines %s on this CPU (once; recorded in %s)", export_dir,
                ", ".join(loaded), EXPORT_META)
    figures = measure_engines({e: r for e, (_, r) in loaded.items()}, config, min_seq_len)
    engine = min(figures, key=lambda e: figures[e]["score_ms"])
    reason = (f"auto: fastest here ({key['cpu']}, {num_threads} threads, {time.strftime('%Y-%m-%d')}) on a "
              f"batch of {AUTO_BATCH} x {AUTO_LENGTH} tokens and {AUTO_SINGLES} single {AUTO_SHORT}-token "
              f"sentences: " + "; ".join(
                  f"{_graph_note(e, precision, meta)} {f['batch_ms']} ms + {AUTO_SINGLES} x {f['single_ms']} ms"
                  for e, f in sorted(figures.items(), key=lambda x: x[1]["score_ms"])) + left_out)
    if meta.get("fingerprint"):
        def change(m):
            m.setdefault("engine_choice", {})[slot] = {"engine": engine, "reason": reason, "figures": figures,
                                                       "measured_on": key}
        try:
            meta = update_meta(export_dir, meta["fingerprint"], change)
        except (OSError, InferenceError) as e:
            logger.warning("%s: cannot record the measured engine in %s (%s)", export_dir, EXPORT_META, e)
    graph, run = loaded[engine]
    return engine, reason, graph, run, meta


def record_engine(export_dir: str, meta: Dict, device: str, precision: str, engine: str, reason: str, graph: str,
                  task: Optional[str]) -> Dict:
    """Write the choice into export.json (when it changed) and log it once per process; returns export.json
    as it now is."""
    key = _slot(device, precision)
    record = {"engine": engine, "reason": reason, "graph": os.path.basename(graph)}
    if meta.get("fingerprint") and (meta.get("engine") or {}).get(key) != record:
        def change(m):
            if (m.get("engine") or {}).get(key) == record:
                return False
            m.setdefault("engine", {})[key] = record
        try:
            meta = update_meta(export_dir, meta["fingerprint"], change)
        except (OSError, InferenceError) as e:  # a cache we may read but not write: the choice stands
            logger.warning("%s: cannot record the engine in %s (%s)", export_dir, EXPORT_META, e)
    said = (export_dir, key, engine)
    if said not in _announced:
        _announced.add(said)
        logger.info("%s %s on %s: engine %s (%s)", task or "backbone", precision, device, engine, reason)
    return meta

"""Fast inference: export a model to a static graph and run it with Paddle Inference, or convert that graph to
ONNX and run it with ONNX Runtime or OpenVINO (`engine=`; "auto" picks by choose_engine's measured rule).

    pred = ElectraPredictor.from_pretrained(model_dir, task="seq-cls", precision="bf16")
    logits = pred(input_ids, token_type_ids, attention_mask)          # numpy in, numpy out
    per_example = pred.predict_batches(list_of_id_lists)              # length-bucketed, input order

Tasks: those of the task registry (paddle_electra.tasks): None (the backbone: sequence output
[B, S, H]), "discriminator" (RTD logits [B, S]), "generator" (MLM logits [B, S, V]), "seq-cls",
"text-matching", "text-regression", "token-cls", "reading-comprehension", each returning what the
dygraph model's forward returns, as numpy arrays.

The exported graph (`paddle.jit.save`, batch and sequence length dynamic) is cached in
`<model_dir>/inference/<task>/` together with `export.json`, which records a SHA-256 of the files
the model is loaded from (config, weights, label map), the Paddle version and the export format;
a mismatch re-exports. `export.sig` signs the graph with this install's key ($PADDLE_ELECTRA_HOME/
.inference_key): a graph folder that came with a model is rebuilt from its weights, not run. When the
model folder is read-only, or its `inference/` is a symbolic link, the cache goes to
`$PADDLE_ELECTRA_HOME/.inference_cache/<task>-<fingerprint>/`. Precision and threads are predictor
settings, so one export serves fp32 and bf16. The ONNX engines' graphs (model.onnx, model.fused.onnx,
model.int8.onnx) are made from it on first use, kept in the same folder, listed in export.json and
covered by the same signature.

CPU: oneDNN kernels, `num_threads` (default: all cores, runtime.default_num_threads, split between this
machine's processes of a paddle.distributed.launch job), and
`identity_op_clean_pass` in front of Paddle's oneDNN passes: it deletes the (inference-time
identity) dropout ops, which otherwise sit between the oneDNN ops and, in bf16, force a
bf16 -> fp32 -> bf16 conversion around each of them. bf16 needs native bf16 instructions
(AVX512-BF16 or AMX-BF16); elsewhere oneDNN would emulate it slower than fp32, so we refuse.
GPU: Paddle's GPU passes, optionally TensorRT with dynamic shapes (not tested on this project's
CPU-only machines).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import runtime
from ..batching import run_bucketed
from ..io import GENERATOR_WEIGHTS_NAME, LABEL_MAP_NAME, WEIGHTS_NAME, atomic_dir, folder_lock, package_home
from ..resolve import resolve
from ..config import CONFIG_NAME, GENERATOR_CONFIG_NAME, ElectraConfig
from ..cpu import cpu_info

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
# "paddle": Paddle Inference (oneDNN on CPU, Paddle's GPU passes); "onnxruntime" / "openvino": the same graph
# converted to ONNX (paddle2onnx) and run by ONNX Runtime / OpenVINO on CPU; "auto": the rule of choose_engine()
ENGINES = ("auto", "paddle", "onnxruntime", "openvino")
ENGINE_ENV = "PADDLE_ELECTRA_ENGINE"
# the Python package each engine imports (and paddle2onnx, which makes their graph): pip names
_ENGINE_PACKAGES = {"onnxruntime": ("onnxruntime", "paddle2onnx"), "openvino": ("openvino", "paddle2onnx")}
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
EXPORT_META = "export.json"
MODEL_PREFIX = "model"  # -> model.json (PIR program) + model.pdiparams
# bump when the export changes in a way that makes old cached graphs wrong
EXPORT_FORMAT = 1
# a sequence length the export probes (with +8) to learn which output axes follow the input length
_PROBE_LENGTH = 24
# delete inference-time dropout (an identity) before the oneDNN fusions run
CPU_EXTRA_PASSES = ("identity_op_clean_pass",)
# oneDNN keeps primitives per input shape; unbounded, memory grows with every new (batch, length) pair
# (ELECTRA-small, batch 4, lengths 1..160: +497 MB; bounded to 1: +157 MB). A bound of 1 costs nothing
# when consecutive batches share a shape, which length bucketing arranges (docs/inference.md).
DEFAULT_ONEDNN_CACHE_CAPACITY = 1
# the length bucketing pads each batch up to a multiple of this (fewer distinct shapes)
DEFAULT_PAD_MULTIPLE = 16


class InferenceError(RuntimeError):
    """The predictor cannot be built or run as asked (names what is wrong)."""


# --- what each task loads: the task registry (paddle_electra.tasks) ----------------------------------
def task_names() -> Tuple:
    from ..tasks import task_names as names
    return names()


def _spec(task: Optional[str]):
    from ..tasks import get_spec
    return get_spec(task)


def _model_class(task: Optional[str]):
    return _spec(task).model_class


def _task_dirname(task: Optional[str]) -> str:
    """The cache folder of a task; tasks served by the same class share one ("text-matching" is
    "seq-cls": the same graph)."""
    from ..tasks import SPECS
    cls = _model_class(task)
    name = next(n for n, s in SPECS.items() if s.model_class is cls)
    return "backbone" if name is None else name


def _source_files(model_dir: str, task: Optional[str]) -> List[str]:
    """The files from_pretrained reads for this task (their bytes make the cache key)."""
    if task == "generator" and os.path.exists(os.path.join(model_dir, GENERATOR_CONFIG_NAME)):
        names = [GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME]  # a pretraining dir's generator
    else:
        names = [CONFIG_NAME, WEIGHTS_NAME]
    names.append(LABEL_MAP_NAME)
    files = [os.path.join(model_dir, n) for n in names]
    for f in files[:2]:
        if not os.path.exists(f):
            raise FileNotFoundError(f"{model_dir}: {os.path.basename(f)} not found; the predictor needs a "
                                    f"from_pretrained dir with {names[0]} and {names[1]} (safetensors)")
    return [f for f in files if os.path.exists(f)]


def model_config(model_dir: str, task: Optional[str]) -> ElectraConfig:
    gen = task == "generator" and os.path.exists(os.path.join(model_dir, GENERATOR_CONFIG_NAME))
    return ElectraConfig.from_json_file(os.path.join(model_dir, GENERATOR_CONFIG_NAME if gen else CONFIG_NAME))


def fingerprint(model_dir: str, task: Optional[str]) -> str:
    import paddle
    h = hashlib.sha256()
    h.update(json.dumps({"format": EXPORT_FORMAT, "paddle": paddle.__version__,
                         "task": _task_dirname(task)}).encode())
    for f in _source_files(model_dir, task):
        h.update(os.path.basename(f).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def load_dygraph(model_dir: str, task: Optional[str] = None):
    """The dygraph model the export is made from, in eval mode (also the parity reference)."""
    cls = _model_class(task)  # the task's saved settings come from the dir
    model = cls.from_pretrained(model_dir)
    new = model.load_report.newly_initialized
    if new:
        raise InferenceError(
            f"{model_dir} holds no fine-tuned {cls.__name__} (its head tensors {', '.join(new)} would be "
            f"random); fine-tune for task {task!r} first, or use task=None / 'discriminator'")
    model.eval()
    return model


# --- export -------------------------------------------------------------------------------------------
def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _probe_seq_axes(model, min_seq_len: int = 1) -> List[Optional[int]]:
    """For each output, the axis whose size is the input length (None if there is none), learnt by
    running two lengths: bucketing trims these axes back to each example's own length."""
    import paddle
    shapes = []
    base = max(_PROBE_LENGTH, min_seq_len)
    with paddle.no_grad():
        for S in (base, base + 8):
            ids = paddle.full([2, S], 1, dtype="int64")
            outs = _as_tuple(model(ids, paddle.zeros_like(ids), paddle.ones_like(ids)))
            shapes.append([list(o.shape) for o in outs])
    axes = []
    for a, b in zip(*shapes):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        axes.append(diff[0] if len(diff) == 1 else None)
    return axes


def export(model, path: str, meta: Optional[Dict] = None) -> str:
    """Save `model` (a dygraph ELECTRA model or head) in eval mode as a static graph in folder `path`
    (written atomically): inputs input_ids, token_type_ids, attention_mask, all int64 [batch, seq_len]
    with both dimensions dynamic. The model itself is left as it was (dygraph, same train/eval mode)."""
    import paddle
    from paddle.static import InputSpec
    was_training = model.training
    model.eval()
    seq_axes = _probe_seq_axes(model, int((meta or {}).get("min_seq_len", 1)))
    spec = [InputSpec([None, None], "int64", name=n) for n in INPUT_NAMES]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    try:
        with atomic_dir(path) as tmp:
            paddle.jit.save(static, os.path.join(tmp, MODEL_PREFIX))
            info = {"format": EXPORT_FORMAT, "paddle": paddle.__version__, "class": type(model).__name__,
                    "inputs": list(INPUT_NAMES), "seq_axes": seq_axes, **(meta or {})}
            with open(os.path.join(tmp, EXPORT_META), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=2)
                f.write("\n")
    finally:
        # to_static swapped the layer's forward for a static function: give the caller its dygraph model back
        rollback = getattr(model.forward, "rollback", None)
        if rollback is not None:
            rollback()
        model.train(was_training)
    return path


def _read_meta(path: str) -> Optional[Dict]:
    try:
        with open(os.path.join(path, EXPORT_META), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    files = [os.path.join(path, MODEL_PREFIX + ext) for ext in (".json", ".pdiparams")]
    return meta if all(os.path.exists(f) for f in files) else None


def _writable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.remove(probe)
        return True
    except OSError:
        return False


def fallback_cache_root() -> str:
    return os.path.join(package_home(), ".inference_cache")


# --- the cache's signature: a graph folder is used only if this install wrote it -----------------------
SIGNATURE = "export.sig"  # HMAC-SHA256 of export.json and the graph's files under this install's key
KEY_NAME = ".inference_key"
_SIGNED = (EXPORT_META, MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdiparams")
_process_key = None  # when the home cannot hold a key: one per process (caches are rebuilt per process)


def _install_key() -> bytes:
    """This install's secret (32 random bytes, mode 0600, in $PADDLE_ELECTRA_HOME, made on first use).
    export.json's fingerprint is a hash of the model folder that anyone can compute, so a folder could
    ship any graph under it; a graph is trusted only with a signature under this key."""
    global _process_key
    path = os.path.join(package_home(), KEY_NAME)
    for _ in range(2):
        try:
            with open(path, "rb") as f:
                key = f.read(64)
            if len(key) == 32 and not os.path.islink(path):
                return key
            break  # not a key of ours: leave it, use a process key
        except FileNotFoundError:
            pass
        except OSError:
            break
        try:  # written whole under another name, then linked in: a reader never sees half a key
            os.makedirs(package_home(), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=package_home(), prefix=".inference_key.tmp-")  # mode 0600
            try:
                os.write(fd, os.urandom(32))
                os.close(fd)
                os.link(tmp, path)
            except FileExistsError:  # another process made it first: read theirs
                pass
            finally:
                os.remove(tmp)
        except OSError:
            break
    logger.warning("cannot keep a key in %s; exported graphs are verified for this process only", package_home())
    if _process_key is None:
        _process_key = os.urandom(32)
    return _process_key


def _derived_names(meta: Optional[Dict]) -> List[str]:
    """The derived graphs (ONNX files) export.json lists: the signature covers them too. Plain file names
    only (never a path out of the folder)."""
    names = sorted((meta or {}).get("derived") or {})
    if any(not isinstance(n, str) or os.path.basename(n) != n or n in ("", ".", "..") for n in names):
        raise ValueError(f"export.json lists derived files that are not plain file names: {names}")
    return names


def _signed_files(path: str) -> List[str]:
    return [*_SIGNED, *_derived_names(_read_meta(path))]


def _signature(path: str) -> str:
    import hmac
    h = hmac.new(_install_key(), digestmod="sha256")
    for name in _signed_files(path):
        h.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _sign(path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{SIGNATURE}.tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(_signature(path) + "\n")
    os.replace(tmp, os.path.join(path, SIGNATURE))


def _trusted_meta(path: str, fp: str, warn: bool = True) -> Optional[Dict]:
    """export.json of the cache folder `path` if it holds an export of fingerprint `fp` that this install
    signed, else None. Nothing is read through a symbolic link."""
    import hmac
    if os.path.islink(path) or not os.path.isdir(path):
        return None
    meta = _read_meta(path)
    if meta is None or meta.get("fingerprint") != fp:
        return None
    try:
        names = [*_SIGNED, *_derived_names(meta), SIGNATURE]
    except ValueError:
        names = None
    files = [os.path.join(path, name) for name in names or ()]
    if names is None or any(os.path.islink(f) or not os.path.isfile(f) for f in files):
        if warn:
            logger.warning("%s: the cache folder is incomplete or lists files it should not; rebuilding it", path)
        return None
    try:
        with open(files[-1], encoding="ascii") as f:
            signed = f.read().strip()
        ok = hmac.compare_digest(signed, _signature(path))
    except (OSError, ValueError):
        ok = False
    if not ok and warn:
        logger.warning("%s: the exported graph was not written by this install (or was changed); rebuilding "
                       "it from the weights", path)
    return meta if ok else None


def exported_model(model_dir: str, task: Optional[str] = None, rebuild: bool = False,
                   writes_graphs: bool = False) -> Tuple[str, Dict]:
    """The folder of an up-to-date export of `model_dir` for `task` (exporting it when missing, stale or
    not signed by this install) and its export.json. The cache beside the model is
    `<model_dir>/inference/<task>`; when that is a symbolic link (it could point anywhere) or the folder
    is read-only, the export goes to fallback_cache_root(). `writes_graphs`: the caller derives graphs in
    the folder (the ONNX engines); a cache folder it cannot write is then passed over for the fallback
    (a read-only model folder whose cache holds only the Paddle graph could not give int8)."""
    model_dir = os.path.abspath(resolve(model_dir))
    _model_class(task)  # unknown task: fail before hashing gigabytes
    fp = fingerprint(model_dir, task)
    root = os.path.join(model_dir, "inference")
    beside = os.path.join(root, _task_dirname(task))
    fallback = os.path.join(fallback_cache_root(), f"{_task_dirname(task)}-{fp[:24]}")
    linked = os.path.islink(root) or os.path.islink(beside)
    if linked:
        logger.warning("%s is a symbolic link: not read or written through; the exported graph is cached in %s",
                       beside if os.path.islink(beside) else root, fallback)
    for path in (fallback,) if linked else (beside, fallback):
        meta = None if rebuild else _trusted_meta(path, fp)
        if meta is not None:
            if writes_graphs and path == beside and not _writable(path):
                logger.info("%s is read-only; the ONNX graphs are made from an export in %s", path, fallback)
                continue
            return path, meta
    target = beside if not linked and _writable(root) else fallback
    if target == fallback and not linked:
        logger.info("%s is read-only; caching the exported graph in %s", model_dir, fallback)
    # check-then-export under the folder's lock (beside it: the export replaces the folder): a second
    # process building the same cache waits, then uses the first one's export instead of replacing the
    # folder under it while it writes its ONNX graphs there (_update_meta takes the same lock)
    with folder_lock(target):
        meta = None if rebuild else _trusted_meta(target, fp, warn=False)  # said above if it was not trusted
        if meta is not None:
            return target, meta
        logger.info("exporting %s (task %s) to a static graph in %s", model_dir, task, target)
        model = load_dygraph(model_dir, task)
        meta = {"fingerprint": fp, "task": task, "source": model_dir, "min_seq_len": _spec(task).min_seq_len(model)}
        export(model, target, meta)
        _sign(target)
        return target, _read_meta(target)


# --- hardware ---------------------------------------------------------------------------------------
def cpu_supports_bf16() -> bool:
    """Native bf16 on this CPU (AVX512-BF16 or AMX-BF16), as Paddle's oneDNN build sees it."""
    from ..paddle_compat import supports_bf16_fast
    native = supports_bf16_fast()
    return cpu_info().has_native_bf16 if native is None else native


def gpu_available() -> bool:
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


# --- engines: which runtime runs the exported graph ----------------------------------------------------
# engine="auto" on CPU (fp32) measures the engines installed here on the model at hand, once per (model, CPU,
# threads, package versions), and keeps the fastest (measure_engines; the record sits in export.json). Figures
# measured on this project's machines are in docs/inference.md, not here: they differ from CPU to CPU.
# The workload of the measurement: one batch of AUTO_BATCH sequences of AUTO_LENGTH tokens and AUTO_SINGLES
# single sentences of AUTO_SHORT tokens (throughput and batch-1 latency, about equal parts).
AUTO_BATCH, AUTO_LENGTH, AUTO_SINGLES, AUTO_SHORT = 8, 128, 4, 32
# each engine is timed in rounds, the engines taking turns, until this many seconds per engine (at least 2
# rounds, at most AUTO_MAX_ROUNDS); its score is its fastest round
AUTO_SECONDS, AUTO_MAX_ROUNDS = 1.5, 5
# pause before each engine's turn: the threads of the engine before it (ONNX Runtime's pool, OpenMP) spin
# for a while after a run, and on a small machine would be timed as the next engine's cost
AUTO_SETTLE = 0.3
ONNX_OPSET = 14
# the ONNX graphs derived from the exported Paddle graph, kept (and signed) in its cache folder
ONNX_PLAIN, ONNX_FUSED, ONNX_INT8 = "model.onnx", "model.fused.onnx", "model.int8.onnx"
# the ops whose weights int8 quantizes: the projections, and the fused attention's packed Q, K, V (QAttention)
_INT8_OPS = ("MatMul", "Attention")
_announced = set()  # engine choices already logged by this process


def _importable(module: str) -> bool:
    import importlib
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def _require(engine: str) -> None:
    missing = [m for m in _ENGINE_PACKAGES.get(engine, ()) if not _importable(m)]
    if missing:
        raise ImportError(f"engine={engine!r} needs the Python package(s) {', '.join(missing)} "
                          f"(pip install {' '.join(missing)}); or use engine='paddle'")


def auto_candidates(precision: str = "fp32") -> List[str]:
    """The engines installed here that can run `precision` on CPU (what engine="auto" measures)."""
    if precision == "bf16":
        return ["paddle"]  # oneDNN bf16: the only bf16 engine here
    onnx = [e for e in ("onnxruntime", "openvino") if all(_importable(m) for m in _ENGINE_PACKAGES[e])]
    if precision == "int8":
        return [e for e in onnx if e == "onnxruntime"]  # OpenVINO runs the int8 graph in f32 (choose_engine)
    return ["paddle", *onnx]


def choose_engine(engine: Optional[str] = "auto", precision: str = "fp32", device: str = "cpu") -> Tuple[str, str]:
    """(engine, why): `engine` when given (not "auto"), else $PADDLE_ELECTRA_ENGINE, else for "auto": Paddle
    Inference on GPU and for bf16, the only engine installed for the precision, or ("auto", ...) when several
    are installed: the predictor then measures them (measure_engines). Errors for combinations no engine here
    runs."""
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
        elif precision == "bf16":
            engine, why = "paddle", "bf16: Paddle Inference's oneDNN bf16 (the only bf16 engine here)"
        elif precision == "int8":
            if not found:
                _require("onnxruntime")
            engine, why = "onnxruntime", "int8: ONNX Runtime's dynamic int8 (the only int8 engine here)"
        elif len(found) == 1:
            engine, why = "paddle", ("the only fp32 engine installed here (onnxruntime and paddle2onnx, or openvino, "
                                     "are not: pip install onnxruntime paddle2onnx)")
        else:
            return "auto", f"measured among {', '.join(found)}"
    if engine != "paddle":
        if gpu:
            raise InferenceError(f"engine={engine!r} runs on CPU here; use engine='paddle' on {device}")
        if precision == "bf16":
            raise ValueError(f"precision='bf16' runs on engine='paddle' only (oneDNN bf16), not {engine!r}")
        if precision == "int8" and engine == "openvino":
            # OpenVINO does read the dynamically quantized ONNX graph, but its runtime model runs every
            # FullyConnected layer in f32 on it (checked with get_runtime_model(), OpenVINO 2026.4): not int8
            raise ValueError("precision='int8' runs on engine='onnxruntime' only: OpenVINO compiles the dynamically "
                             "quantized graph to f32 matmuls (no int8 kernels), and its own int8 (NNCF static "
                             "quantization) is not built here")
        _require(engine)
    elif precision == "int8":
        raise ValueError("precision='int8' is not available with engine='paddle' (Paddle's oneDNN int8 needs a "
                         "post-training-quantized program); use engine='onnxruntime' (dynamic int8)")
    return engine, why


def _measure_key(precision: str, num_threads: int) -> Dict:
    """What a measurement holds for: the CPU, the threads and the engines' versions (not the date)."""
    info = cpu_info()
    return {"precision": precision, "cpu": info.describe(),
            "flags": hashlib.sha256(" ".join(sorted(info.flags)).encode()).hexdigest()[:16],
            "threads": num_threads, **_versions("paddlepaddle", "paddlepaddle-gpu", "onnxruntime", "openvino",
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
    import time
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


def _write_meta(path: str, meta: Dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{EXPORT_META}.tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(path, EXPORT_META))


def _update_meta(export_dir: str, fingerprint_: str, change) -> Dict:
    """Under the folder's lock (io.folder_lock: its file beside the folder, which an export replaces): re-read export.json (it must still be signed by this install), let
    change(meta) edit it (returning False for no change), write it and re-sign the folder."""
    with folder_lock(export_dir):
        meta = _trusted_meta(export_dir, fingerprint_)
        if meta is None:
            raise InferenceError(f"{export_dir}: the cache changed while in use (no longer signed by this install); "
                                 f"load the predictor again to rebuild it")
        if change(meta) is not False:
            _write_meta(export_dir, meta)
            _sign(export_dir)
        return meta


def _versions(*packages: str) -> Dict[str, str]:
    from importlib import metadata
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


@contextlib.contextmanager
def _quiet_tools():
    """While an ONNX graph is made: onnxruntime's quantizer logs every tensor through the root logger
    (which Paddle's logging set-up prints) and its sessions list unused initializers; hold records up to
    WARNING back (what matters is logged by us after) and the C++ warnings too (back to the default after)."""
    before = logging.root.manager.disable
    logging.disable(max(before, logging.WARNING))
    ort = None
    try:
        import onnxruntime as ort
        ort.set_default_logger_severity(3)
    except ImportError:
        pass
    try:
        yield
    finally:
        logging.disable(before)
        if ort is not None:
            ort.set_default_logger_severity(2)


def _write_file(path: str, build):
    """build(tmp) writes a file beside `path`, which then replaces `path` in one rename (never left half
    written); returns what build returned."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.tmp-")
    os.close(fd)
    try:
        out = build(tmp)
        if os.path.getsize(tmp) == 0:
            raise InferenceError(f"making {path} wrote nothing")
        os.replace(tmp, path)
        return out
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _derive(export_dir: str, meta: Dict, name: str, recipe: Dict, build) -> str:
    """The derived graph `name` of the cache folder: made by build(tmp_file) -> dict of notes when export.json
    does not list it with this recipe (tools' versions, source); listed there and covered by export.sig."""
    path = os.path.join(export_dir, name)
    rec = (meta.get("derived") or {}).get(name)
    if rec is not None and rec.get("recipe") == recipe and os.path.isfile(path):
        return path

    def change(m):
        rec = (m.get("derived") or {}).get(name)
        if rec is not None and rec.get("recipe") == recipe and os.path.isfile(path):
            return False  # another process made it meanwhile
        logger.info("%s: making %s", export_dir, name)
        with _quiet_tools():
            notes = _write_file(path, build) or {}
        for warning in notes.pop("warnings", ()):
            logger.warning("%s: %s", export_dir, warning)
        # "build" names this making of the file: the graphs made from it record it (made_from in onnx_graph)
        m.setdefault("derived", {})[name] = {"recipe": recipe, "build": os.urandom(8).hex(), **notes}
    if not meta.get("fingerprint"):
        raise InferenceError(f"{export_dir}: export.json has no fingerprint (not a cache folder of exported_model); "
                             f"the ONNX engines need one")
    updated = _update_meta(export_dir, meta["fingerprint"], change)
    meta.clear()
    meta.update(updated)
    return path


def _paddle2onnx(export_dir: str, output: str, opset_version: int = ONNX_OPSET) -> None:
    try:
        import paddle2onnx
    except ImportError:
        raise ImportError("ONNX export needs paddle2onnx (pip install paddle2onnx)") from None
    # onnxoptimizer, not the default polygraphy, which pip-installs onnx_graphsurgeon at run time
    paddle2onnx.export(os.path.join(export_dir, MODEL_PREFIX + ".json"),
                       os.path.join(export_dir, MODEL_PREFIX + ".pdiparams"), output,
                       opset_version=opset_version, enable_onnx_checker=True, optimize_tool="onnxoptimizer")


def _fusable(model):
    """The paddle2onnx graph in the form onnxruntime.transformers' attention fusion matches (that of HF's BERT
    export): without Identity and "+ 0" / "* 1" nodes (paddle2onnx's own onnxoptimizer pass list fails with
    onnxoptimizer 0.3.13), scores / sqrt(d) instead of scores * (1 / sqrt(d)), and the additive mask as
    (1 - cast(unsqueeze(unsqueeze(attention_mask)))) * c instead of Paddle's scale op (cast(unsqueeze(mask)) *
    -1 + 1) * c. The same values (x * (1/c) and x / c differ by at most one rounding). Returns (model, notes)."""
    import numpy as np
    import onnxoptimizer
    from onnx import NodeProto, TensorProto, helper, numpy_helper
    model = onnxoptimizer.optimize(model, ["eliminate_identity", "eliminate_nop_with_unit", "eliminate_nop_cast",
                                           "eliminate_nop_transpose", "eliminate_nop_reshape",
                                           "extract_constant_to_initializer", "eliminate_deadend",
                                           "eliminate_unused_initializer"])
    g = model.graph
    nodes = list(g.node)  # held for the whole pass: their ids name them in `replaced`
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in nodes for o in n.output}
    consumers: Dict[str, list] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inputs = {i.name for i in g.input}

    def scalar(name):
        a = consts.get(name)
        return float(a.reshape(())) if a is not None and a.size == 1 else None

    def parent(node, op):  # the producer of input 0 when it is `op` and feeds nothing else
        p = producer.get(node.input[0]) if node is not None else None
        return p if p is not None and p.op_type == op and len(consumers.get(p.output[0], ())) == 1 else None

    def const(name, value):
        g.initializer.append(numpy_helper.from_array(value, name))
        return name

    replaced, notes = {}, {"masks": 0, "score_divs": 0}
    for n in nodes:
        c = scalar(n.input[1]) if n.op_type == "Mul" and len(n.input) == 2 else None
        if c is None:
            continue
        add = parent(n, "Add")
        neg = parent(add, "Mul")
        unsq = parent(neg, "Unsqueeze")
        cast = parent(unsq, "Cast")
        if (c < 0 and cast is not None and cast.input[0] in inputs and scalar(add.input[1]) == 1.0
                and scalar(neg.input[1]) == -1.0 and list(consts.get(unsq.input[1], [])) == [1, 2]):
            k = notes["masks"]
            notes["masks"] += 1
            x = f"fusable.mask{k}"
            replaced[id(n)] = [
                helper.make_node("Unsqueeze", [cast.input[0], const(f"{x}.axis1", np.array([1], np.int64))],
                                 [f"{x}.u1"], name=f"{x}.Unsqueeze1"),
                helper.make_node("Unsqueeze", [f"{x}.u1", const(f"{x}.axis2", np.array([2], np.int64))],
                                 [f"{x}.u2"], name=f"{x}.Unsqueeze2"),
                helper.make_node("Cast", [f"{x}.u2"], [f"{x}.float"], to=TensorProto.FLOAT, name=f"{x}.Cast"),
                helper.make_node("Sub", [const(f"{x}.one", np.array(1.0, np.float32)), f"{x}.float"], [f"{x}.sub"],
                                 name=f"{x}.Sub"),
                helper.make_node("Mul", [f"{x}.sub", const(f"{x}.value", np.array(c, np.float32))], list(n.output),
                                 name=f"{x}.Mul")]
            for old in (add, neg, unsq, cast):
                replaced[id(old)] = []
            continue
        scores = producer.get(n.input[0])
        after = consumers.get(n.output[0], [])
        if (scores is not None and scores.op_type == "MatMul" and len(after) == 1 and after[0].op_type == "Add"
                and any(x.op_type == "Softmax" for x in consumers.get(after[0].output[0], ()))):
            k = notes["score_divs"]
            notes["score_divs"] += 1
            replaced[id(n)] = [helper.make_node(
                "Div", [n.input[0], const(f"fusable.scale{k}", np.array(1.0 / c, np.float32))], list(n.output),
                name=f"fusable.Div{k}")]
    out = []
    for n in nodes:  # standalone copies, before the graph's own list is cleared
        for m in replaced.get(id(n), [n]):
            out.append(NodeProto())
            out[-1].CopyFrom(m)
    del g.node[:]
    g.node.extend(out)
    return model, notes


def onnx_graph(export_dir: str, meta: Dict, config: ElectraConfig, kind: str = "plain") -> str:
    """The ONNX file of a cache folder, made on first use and kept there (signed): "plain" (paddle2onnx),
    "fused" (onnxruntime.transformers.optimizer's BERT fusions; the plain graph when the fusion fails,
    said in a warning and in export.json), "int8" (onnxruntime.quantization.quantize_dynamic of the fused
    graph: MatMul weights to QInt8, activations quantized per call)."""
    if kind == "plain":
        return _derive(export_dir, meta, ONNX_PLAIN, {"opset": ONNX_OPSET, **_versions("paddle2onnx")},
                       lambda tmp: _paddle2onnx(export_dir, tmp))
    plain = onnx_graph(export_dir, meta, config, "plain")
    ort_version = _versions("onnxruntime", "onnx")

    def made_from(name):  # a graph is remade when the one it is made from was
        return {"from": name, "from_build": meta["derived"][name].get("build")}
    if kind == "fused":
        def fuse(tmp):
            try:  # every import too: the fusion is optional (sympy, onnxoptimizer), the plain graph is not
                import onnx
                import onnxruntime as ort
                from onnxruntime.transformers import optimizer
                try:
                    graph, rewrites = _fusable(onnx.load(plain))
                except ImportError:  # onnxoptimizer (paddle2onnx brings it below Python 3.12)
                    graph, rewrites = onnx.load(plain), "none: onnxoptimizer is not installed"
                onnx.save(graph, tmp)  # the optimizer's sessions read a file more reliably than a ModelProto
                # ONNX Runtime's basic graph optimizations first (what optimize_model's default opt_level 1 runs,
                # through a helper that imports torch for a version check), then the fusions alone (opt_level 0)
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                so.optimized_model_filepath = tmp
                so.log_severity_level = 3
                ort.InferenceSession(tmp, so, providers=["CPUExecutionProvider"], disabled_optimizers=["ConstantSharing"])
                model = optimizer.optimize_model(tmp, model_type="bert", num_heads=config.num_attention_heads,
                                                 hidden_size=config.hidden_size, opt_level=0)
                model.save_model_to_file(tmp)
            except Exception as e:  # noqa: BLE001 - any failure of the optimizer: run the plain graph
                import shutil
                shutil.copyfile(plain, tmp)
                failed = f"{type(e).__name__}: {e}"
                return {"fusion": f"failed: {failed}", "warnings": [
                    f"onnxruntime's transformers optimizer failed ({failed}); using the plain ONNX graph"]}
            fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
            notes = {"fusion": fused, "rewrites": rewrites}
            if fused.get("Attention", 0) < config.num_hidden_layers:
                notes["warnings"] = [f"onnxruntime's optimizer fused the attention of {fused.get('Attention', 0)} "
                                     f"of {config.num_hidden_layers} layers ({fused})"]
            return notes
        return _derive(export_dir, meta, ONNX_FUSED, {**made_from(ONNX_PLAIN), "rewrites": 2, **ort_version,
                                                        **_versions("sympy", "onnxoptimizer")}, fuse)
    if kind == "int8":
        fused = onnx_graph(export_dir, meta, config, "fused")
        # Without VNNI (AVX2, AVX-512F) ONNX Runtime's u8 x s8 kernels sum pairs of products in 16 bits, which
        # saturates with 8-bit weights: 7-bit weights there (reduce_range). Measured on AMD EPYC (AVX2), 2-layer
        # random weights: max logit error 13-21% of the largest logit with 8 bits, 2-3% with 7.
        reduce_range = not cpu_info().has_vnni

        def quantize(tmp):
            import onnx
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError as e:  # its own dependencies (ml_dtypes): the hub extra declares them
                raise InferenceError(f"precision='int8' needs onnxruntime.quantization, which cannot be imported "
                                     f"here ({e}); pip install ml_dtypes") from e
            # the fused ops (EmbedLayerNormalization, Attention) are outside ONNX shape inference: say float
            quantize_dynamic(fused, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=list(_INT8_OPS),
                             reduce_range=reduce_range, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            return {"quantization": f"dynamic, {' and '.join(_INT8_OPS)} weights QInt8" +
                    (" in 7 bits (reduce_range: no VNNI on this CPU)" if reduce_range else "")}
        return _derive(export_dir, meta, ONNX_INT8,
                       {**made_from(ONNX_FUSED), "reduce_range": reduce_range, "ops": list(_INT8_OPS), **ort_version},
                       quantize)
    raise ValueError(f"kind must be plain, fused or int8, got {kind!r}")


class _PaddleRunner:
    def __init__(self, predictor):
        self.predictor = predictor
        self.inputs, self.outputs = predictor.get_input_names(), predictor.get_output_names()

    def __call__(self, feeds):
        for name in self.inputs:
            h = self.predictor.get_input_handle(name)
            h.reshape(list(feeds[name].shape))
            h.copy_from_cpu(feeds[name])
        self.predictor.run()
        return tuple(self.predictor.get_output_handle(n).copy_to_cpu() for n in self.outputs)


class _OrtRunner:
    def __init__(self, path: str, num_threads: int):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = num_threads, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # not its notes about unused initializers
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds):
        return tuple(self.session.run(None, {n: feeds[n] for n in self.inputs}))


class _OpenVinoRunner:
    def __init__(self, path: str, num_threads: int):
        import openvino as ov
        # f32 said explicitly: on CPUs with bf16 OpenVINO's default precision hint is bf16
        self.compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": num_threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.outputs = [o.get_any_name() for o in self.compiled.outputs]

    def __call__(self, feeds):
        self.request.infer({n: feeds[n] for n in self.inputs})
        return tuple(self.request.get_output_tensor(i).data.copy() for i in range(len(self.outputs)))


# --- the predictor -------------------------------------------------------------------------------------
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
        self.spec = _spec(task)
        self.meta = meta or _read_meta(export_dir) or {}
        self.seq_axes = self.meta.get("seq_axes")
        self.min_seq_len = int(self.meta.get("min_seq_len", 1))
        self.num_threads = num_threads or runtime.default_num_threads(runtime.local_process_count())
        self.extra_passes = list(extra_passes)
        if self.engine == "auto":
            self.engine, self.engine_reason, self.graph, self._run = self._auto(
                use_tensorrt, onednn_cache_capacity, remeasure)
        else:
            self.graph, self._run = self._load(self.engine, use_tensorrt, onednn_cache_capacity)
        self._inputs = self._run.inputs
        if sorted(self._inputs) != sorted(INPUT_NAMES):
            raise InferenceError(f"{self.graph}: the graph takes {self._inputs}, expected {INPUT_NAMES}")
        self._outputs = self._run.outputs
        self._lock = threading.Lock()
        self._record_engine()

    def _load(self, engine: str, use_tensorrt: bool = False,
              onednn_cache_capacity: int = DEFAULT_ONEDNN_CACHE_CAPACITY) -> Tuple[str, object]:
        """(graph file, runner) of `engine` for this predictor's precision; ONNX graphs made on first use."""
        if engine == "paddle":
            return (os.path.join(self.export_dir, MODEL_PREFIX + ".json"),
                    _PaddleRunner(self._create(use_tensorrt, onednn_cache_capacity)))
        kind = "int8" if self.precision == "int8" else "fused" if engine == "onnxruntime" else "plain"
        try:
            graph = onnx_graph(self.export_dir, self.meta, self.config, kind)
        except OSError as e:  # e.g. a cache folder that became read-only after the export
            raise InferenceError(f"{self.export_dir}: cannot write the {engine} graph there "
                                 f"({e.strerror or e}); use engine='paddle'") from e
        runner = _OrtRunner if engine == "onnxruntime" else _OpenVinoRunner
        try:
            return graph, runner(graph, self.num_threads)
        except Exception as e:  # noqa: BLE001 - the engine's own error types
            raise InferenceError(f"{engine} cannot load {graph}: {type(e).__name__}: {e}") from e

    def _graph_note(self, engine: str, graph: str) -> str:
        """What an engine runs, as the reason says it: the ONNX Runtime graph fused or not (and why not)."""
        if engine != "onnxruntime" or self.precision != "fp32":
            return engine
        fusion = ((self.meta.get("derived") or {}).get(ONNX_FUSED) or {}).get("fusion")
        if isinstance(fusion, dict) and fusion.get("Attention"):
            return "onnxruntime (fused graph)"
        return f"onnxruntime (unfused graph: {fusion if isinstance(fusion, str) else 'no attention fused'})"

    def _auto(self, use_tensorrt: bool, onednn_cache_capacity: int, remeasure: bool):
        """engine="auto" with several engines installed: the one measured fastest on this model, CPU, thread
        count and package versions (the record in export.json, measured here on first use or with
        remeasure=True); an engine that fails to load is left out, and the reason says so."""
        key = _measure_key(self.precision, self.num_threads)
        slot = f"{self.device.split(':')[0]}-{self.precision}"
        record = (self.meta.get("engine_choice") or {}).get(slot)
        if not remeasure and record and record.get("measured_on") == key:
            try:
                graph, run = self._load(record["engine"], use_tensorrt, onednn_cache_capacity)
                return record["engine"], record["reason"], graph, run
            except InferenceError as e:
                logger.warning("%s: the engine measured fastest here, %s, does not load now (%s); measuring again",
                               self.export_dir, record["engine"], e)
        loaded, failed = {}, {}
        for engine in auto_candidates(self.precision):
            try:
                loaded[engine] = self._load(engine, use_tensorrt, onednn_cache_capacity)
            except Exception as e:  # noqa: BLE001 - any engine's failure: measure the others
                failed[engine] = f"{type(e).__name__}: {e}"
                logger.warning("%s: engine %s left out of the auto choice: %s", self.export_dir, engine, failed[engine])
        if not loaded:
            raise InferenceError(f"{self.export_dir}: no engine loads ({failed})")
        left_out = "".join(f"; {e} left out ({why})" for e, why in failed.items())
        if len(loaded) == 1:
            (engine, (graph, run)), = loaded.items()
            return engine, f"auto: the only engine that loads here{left_out}", graph, run
        logger.info("%s: timing the engines %s on this CPU (once; recorded in %s)", self.export_dir,
                    ", ".join(loaded), EXPORT_META)
        figures = measure_engines({e: r for e, (_, r) in loaded.items()}, self.config, self.min_seq_len)
        engine = min(figures, key=lambda e: figures[e]["score_ms"])
        import time
        reason = (f"auto: fastest here ({key['cpu']}, {self.num_threads} threads, {time.strftime('%Y-%m-%d')}) on a "
                  f"batch of {AUTO_BATCH} x {AUTO_LENGTH} tokens and {AUTO_SINGLES} single {AUTO_SHORT}-token "
                  f"sentences: " + "; ".join(
                      f"{self._graph_note(e, loaded[e][0])} {f['batch_ms']} ms + {AUTO_SINGLES} x {f['single_ms']} ms"
                      for e, f in sorted(figures.items(), key=lambda x: x[1]["score_ms"])) + left_out)
        if self.meta.get("fingerprint"):
            def change(m):
                m.setdefault("engine_choice", {})[slot] = {"engine": engine, "reason": reason, "figures": figures,
                                                           "measured_on": key}
            try:
                self.meta = _update_meta(self.export_dir, self.meta["fingerprint"], change)
            except (OSError, InferenceError) as e:
                logger.warning("%s: cannot record the measured engine in %s (%s)", self.export_dir, EXPORT_META, e)
        graph, run = loaded[engine]
        return engine, reason, graph, run

    def _record_engine(self):
        """Write the choice into export.json (when it changed) and log it once per process."""
        key = f"{self.device.split(':')[0]}-{self.precision}"
        record = {"engine": self.engine, "reason": self.engine_reason, "graph": os.path.basename(self.graph)}
        if self.meta.get("fingerprint") and (self.meta.get("engine") or {}).get(key) != record:
            def change(m):
                if (m.get("engine") or {}).get(key) == record:
                    return False
                m.setdefault("engine", {})[key] = record
            try:
                self.meta = _update_meta(self.export_dir, self.meta["fingerprint"], change)
            except (OSError, InferenceError) as e:  # a cache we may read but not write: the choice stands
                logger.warning("%s: cannot record the engine in %s (%s)", self.export_dir, EXPORT_META, e)
        said = (self.export_dir, key, self.engine)
        if said not in _announced:
            _announced.add(said)
            logger.info("%s %s on %s: engine %s (%s)", self.task or "backbone", self.precision, self.device,
                        self.engine, self.engine_reason)

    @classmethod
    def from_pretrained(cls, model_dir: str, task: Optional[str] = None, precision: str = "fp32",
                        num_threads: Optional[int] = None, device: Optional[str] = None,
                        use_tensorrt: bool = False, rebuild: bool = False, engine: Optional[str] = "auto",
                        remeasure: bool = False, **kwargs) -> "ElectraPredictor":
        """Predictor for a from_pretrained dir (or registered variant name): exports the graph on first
        use (or when the weights changed) and loads it. `device`: "cpu", "gpu", "gpu:1"; default the
        GPU when there is one. `engine`: "auto" (choose_engine's rule: on CPU the fastest of the engines
        installed here, measured on this model once and recorded; `remeasure=True` times them again;
        $PADDLE_ELECTRA_ENGINE overrides it), "paddle", "onnxruntime", "openvino". `precision`: "fp32", "bf16" (Paddle, native-bf16 CPUs or
        GPUs), "int8" (ONNX Runtime's run of the dynamically quantized ONNX graph)."""
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

    # --- configuration ---
    def _create(self, use_tensorrt: bool, onednn_cache_capacity: int):
        from paddle import inference as pi
        cfg = pi.Config(os.path.join(self.export_dir, MODEL_PREFIX + ".json"),
                        os.path.join(self.export_dir, MODEL_PREFIX + ".pdiparams"))
        if self.device.startswith("gpu"):
            self._configure_gpu(cfg, pi, use_tensorrt)
        else:
            cfg.disable_gpu()
            cfg.enable_onednn()
            cfg.set_onednn_cache_capacity(onednn_cache_capacity)
            cfg.set_cpu_math_library_num_threads(self.num_threads)
            if self.extra_passes:  # run before Paddle's own oneDNN passes
                cfg.enable_custom_passes(self.extra_passes, False)
            if self.precision == "bf16":
                cfg.enable_onednn_bfloat16()
        cfg.disable_glog_info()
        try:
            return pi.create_predictor(cfg)
        except Exception as e:  # Paddle raises ValueError / RuntimeError with C++ context
            raise InferenceError(f"cannot create a Paddle Inference predictor for {self.export_dir} "
                                 f"({self.device}, {self.precision}): {e}") from e

    def _configure_gpu(self, cfg, pi, use_tensorrt: bool):
        device_id = int(self.device.split(":")[1]) if ":" in self.device else 0
        if self.precision == "bf16":
            import paddle
            major, _ = paddle.device.cuda.get_device_capability(device_id)
            if major < 8:
                raise InferenceError(f"precision='bf16' on GPU needs compute capability >= 8.0 (Ampere); "
                                     f"gpu:{device_id} has {major}.x. Use precision='fp32'.")
        prec = pi.PrecisionType.Bfloat16 if self.precision == "bf16" else pi.PrecisionType.Float32
        cfg.enable_use_gpu(256, device_id, prec)
        if use_tensorrt:
            if self.precision == "bf16":
                raise InferenceError("TensorRT has no bf16 mode here; use precision='fp32' with TensorRT")
            cfg.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=3,
                                       precision_mode=pi.PrecisionType.Float32, use_static=False,
                                       use_calib_mode=False)
            S = self.config.max_position_embeddings
            shapes = [{n: [lo, s] for n in INPUT_NAMES} for lo, s in ((1, 1), (64, S), (32, 128))]
            cfg.set_trt_dynamic_shape_info(*shapes)

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
                      max_length: int = 128, batch_size: int = 32, tokenizer=None) -> List:
        """Tokenize (the model dir's vocab, truncated to max_length) and run predict_batches."""
        if tokenizer is None:
            from ..tokenizer import ElectraTokenizer
            tokenizer = ElectraTokenizer.from_pretrained(self.meta.get("source"))
        enc = tokenizer(list(texts), list(text_pairs) if text_pairs is not None else None,
                        max_length=max_length, truncation=True)
        return self.predict_batches(enc["input_ids"], enc["token_type_ids"], batch_size=batch_size)

    def __repr__(self):
        return (f"ElectraPredictor(task={self.task!r}, engine={self.engine!r}, precision={self.precision!r}, "
                f"device={self.device!r}, "
                f"num_threads={self.num_threads}, export_dir={self.export_dir!r})")


# --- ONNX ------------------------------------------------------------------------------------------------
def export_onnx(model_dir: str, output: str, task: Optional[str] = None, opset_version: int = ONNX_OPSET) -> str:
    """Write `output` (.onnx) from the cached static export through paddle2onnx: the same inputs
    (int64 input_ids, token_type_ids, attention_mask with dynamic batch and length) and outputs as the
    predictor. Run it with onnxruntime (the `bench` extra)."""
    if not _importable("paddle2onnx"):
        raise ImportError("ONNX export needs paddle2onnx (pip install paddle2onnx)")
    export_dir, _ = exported_model(model_dir, task)
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    _write_file(output, lambda tmp: _paddle2onnx(export_dir, tmp, opset_version))
    return output

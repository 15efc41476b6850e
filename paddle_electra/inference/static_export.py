"""The first stage: a model folder and a task -> an exported static graph in a signed cache folder.

The task registry (paddle_electra.tasks) says which class a task loads; the fingerprint (a SHA-256 of the
files from_pretrained reads, the Paddle version and the export format) says when an export is stale;
`export` saves the dygraph model with `paddle.jit.save` (batch and sequence length dynamic), and
`exported_model` finds or makes the export in `<model_dir>/inference/<task>/`, or in
$PADDLE_ELECTRA_HOME/.inference_cache/<task>-<fingerprint>/ when the model folder is read-only or its
`inference/` is a symbolic link, and signs it (cache.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Dict, List, Optional, Tuple

import paddle
from paddle.static import InputSpec

from ..config import CONFIG_NAME, GENERATOR_CONFIG_NAME, ElectraConfig
from ..io import GENERATOR_WEIGHTS_NAME, LABEL_MAP_NAME, WEIGHTS_NAME, atomic_dir, folder_lock, package_home
from ..resolve import resolve
from ..tasks import SPECS, get_spec, task_names  # noqa: F401  (task_names: the tasks a predictor takes)
from .cache import EXPORT_META, MODEL_PREFIX, InferenceError, read_meta, sign, trusted_meta

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
# bump when the export changes in a way that makes old cached graphs wrong
EXPORT_FORMAT = 1
# a sequence length the export probes (with +8) to learn which output axes follow the input length
_PROBE_LENGTH = 24


# --- what each task loads: the task registry ------------------------------------------------------------
def _model_class(task: Optional[str]):
    return get_spec(task).model_class


def _task_dirname(task: Optional[str]) -> str:
    """The cache folder of a task; tasks served by the same class share one ("text-matching" is
    "seq-cls": the same graph)."""
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


# --- the cache folder of an export: beside the model, or in the home ------------------------------------
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
        meta = None if rebuild else trusted_meta(path, fp)
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
    # folder under it while it writes its ONNX graphs there (cache.update_meta takes the same lock)
    with folder_lock(target):
        meta = None if rebuild else trusted_meta(target, fp, warn=False)  # said above if it was not trusted
        if meta is not None:
            return target, meta
        logger.info("exporting %s (task %s) to a static graph in %s", model_dir, task, target)
        model = load_dygraph(model_dir, task)
        meta = {"fingerprint": fp, "task": task, "source": model_dir, "min_seq_len": get_spec(task).min_seq_len(model)}
        export(model, target, meta)
        sign(target)
        return target, read_meta(target)

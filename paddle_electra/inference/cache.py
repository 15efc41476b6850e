"""The cache folder of an export and what vouches for it: the folder's files, this install's key, the
HMAC signature over the folder, the graphs derived in it (the ONNX files, made once and signed with it),
and export.json written atomically under the folder's lock.

A folder holds `model.json` + `model.pdiparams` (the exported Paddle graph, static_export.py),
`export.json` (its record: fingerprint, source, the derived graphs and their recipes, the engine choice),
the derived `model.onnx`, `model.fused.onnx`, `model.int8.onnx` (rewrites.py) and `export.sig`: an
HMAC-SHA256 of all of them under $PADDLE_ELECTRA_HOME/.inference_key. export.json's fingerprint is a hash
of the model folder that anyone can compute, so a folder could ship any graph under it: a graph is
trusted only with a signature under this install's key, and a folder that came with a model is rebuilt.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import tempfile
from importlib import metadata
from typing import Callable, Dict, List, Optional

from ..io import folder_lock, package_home

logger = logging.getLogger(__name__)

EXPORT_META = "export.json"
MODEL_PREFIX = "model"  # -> model.json (PIR program) + model.pdiparams
SIGNATURE = "export.sig"  # HMAC-SHA256 of export.json and the graph's files under this install's key
KEY_NAME = ".inference_key"
# the ONNX graphs derived from the exported Paddle graph, kept (and signed) in its cache folder
ONNX_PLAIN, ONNX_FUSED, ONNX_INT8 = "model.onnx", "model.fused.onnx", "model.int8.onnx"
_SIGNED = (EXPORT_META, MODEL_PREFIX + ".json", MODEL_PREFIX + ".pdiparams")
_process_key = None  # when the home cannot hold a key: one per process (caches are rebuilt per process)


class InferenceError(RuntimeError):
    """The predictor cannot be built or run as asked (names what is wrong)."""


def read_meta(path: str) -> Optional[Dict]:
    """export.json of `path` when the folder holds an exported graph, else None (not verified: _trusted_meta)."""
    try:
        with open(os.path.join(path, EXPORT_META), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    files = [os.path.join(path, MODEL_PREFIX + ext) for ext in (".json", ".pdiparams")]
    return meta if all(os.path.exists(f) for f in files) else None


def versions(*packages: str) -> Dict[str, str]:
    """The installed versions of `packages` (None for one that is not): what a derived graph's recipe holds."""
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


# --- the signature: a graph folder is used only if this install wrote it ---------------------------------
def _install_key() -> bytes:
    """This install's secret (32 random bytes, mode 0600, in $PADDLE_ELECTRA_HOME, made on first use)."""
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
    return [*_SIGNED, *_derived_names(read_meta(path))]


def _signature(path: str) -> str:
    h = hmac.new(_install_key(), digestmod="sha256")
    for name in _signed_files(path):
        h.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def sign(path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{SIGNATURE}.tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(_signature(path) + "\n")
    os.replace(tmp, os.path.join(path, SIGNATURE))


def trusted_meta(path: str, fp: str, warn: bool = True) -> Optional[Dict]:
    """export.json of the cache folder `path` if it holds an export of fingerprint `fp` that this install
    signed, else None. Nothing is read through a symbolic link."""
    if os.path.islink(path) or not os.path.isdir(path):
        return None
    meta = read_meta(path)
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


# --- changing a signed folder: export.json under the lock, derived files written whole ---------------------
def _write_meta(path: str, meta: Dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{EXPORT_META}.tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(path, EXPORT_META))


def update_meta(export_dir: str, fingerprint: str, change: Callable[[Dict], Optional[bool]]) -> Dict:
    """Under the folder's lock (io.folder_lock: its file beside the folder, which an export replaces):
    re-read export.json (it must still be signed by this install), let change(meta) edit it (returning
    False for no change), write it and re-sign the folder."""
    with folder_lock(export_dir):
        meta = trusted_meta(export_dir, fingerprint)
        if meta is None:
            raise InferenceError(f"{export_dir}: the cache changed while in use (no longer signed by this install); "
                                 f"load the predictor again to rebuild it")
        if change(meta) is not False:
            _write_meta(export_dir, meta)
            sign(export_dir)
        return meta


def write_file(path: str, build):
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


def derive(export_dir: str, meta: Dict, name: str, recipe: Dict, build) -> str:
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
        notes = write_file(path, build) or {}
        for warning in notes.pop("warnings", ()):
            logger.warning("%s: %s", export_dir, warning)
        # "build" names this making of the file: the graphs made from it record it (made_from in rewrites)
        m.setdefault("derived", {})[name] = {"recipe": recipe, "build": os.urandom(8).hex(), **notes}
    if not meta.get("fingerprint"):
        raise InferenceError(f"{export_dir}: export.json has no fingerprint (not a cache folder of exported_model); "
                             f"the ONNX engines need one")
    updated = update_meta(export_dir, meta["fingerprint"], change)
    meta.clear()
    meta.update(updated)
    return path

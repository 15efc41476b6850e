"""Files on disk, below every model: the error class, file names, atomic writes that never replace
what the caller did not ask to replace, and the tensor readers (safetensors; Paddle and PyTorch
pickles, read only when asked, and bounded).

Layering (each imports only those before it): io <- modeling_utils <- modeling, heads <- conversion
<- resolve, hf_download. The PyTorch `.bin` reader is `paddle_electra.io.torch_pickle`.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
from safetensors.numpy import load_file, save_file

from ..config import CONFIG_NAME, GENERATOR_CONFIG_NAME  # noqa: F401 (the config files' names, with the rest)

WEIGHTS_NAME = "model.safetensors"
GENERATOR_WEIGHTS_NAME = "generator.safetensors"
# a pretraining dir with gradient-disentangled embedding sharing (ElectraForPreTraining, embedding_sharing="gdes"):
# the discriminator's own deltas; model.safetensors holds its summed tables, a plain discriminator
EMBEDDING_DELTAS_NAME = "embedding_deltas.safetensors"
PDPARAMS_NAME = "model_state.pdparams"
GENERATOR_PDPARAMS_NAME = "generator_state.pdparams"
VOCAB_NAME = "vocab.txt"
LABEL_MAP_NAME = "label_map.json"
MODEL_CARD_NAME = "README.md"


class CheckpointError(ValueError):
    """A weight file does not fit the model: names the file and the tensors."""


class DataError(ValueError):
    """A data file or folder (a fine-tuning set, pretraining data) is missing or malformed: names the
    file, the line or record, and the field."""


class OutputError(FileExistsError, ValueError):
    """An output path would replace something the caller did not ask to replace (a ValueError too:
    bad input, which the CLI reports in one line)."""


# --- what a writer may replace -------------------------------------------------------------------
@dataclass(frozen=True)
class OutputKind:
    """A kind of output folder. An existing folder counts as a previous output of this kind (and is
    replaced without --overwrite) when it holds every `required` name and nothing outside `allowed`
    (glob patterns)."""
    name: str
    required: Sequence[str]
    allowed: Sequence[str]

    def matches(self, folder: str) -> bool:
        names = os.listdir(folder)
        return (all(r in names for r in self.required)
                and all(any(fnmatch.fnmatchcase(n, a) for a in self.allowed) for n in names))


# a from_pretrained dir (save_pretrained, convert tf|hf, init, export pretraining): the model's
# files, its model card and the predictor's graph cache
MODEL_DIR = OutputKind("model folder", (CONFIG_NAME,),
                       (CONFIG_NAME, GENERATOR_CONFIG_NAME, WEIGHTS_NAME, GENERATOR_WEIGHTS_NAME, EMBEDDING_DELTAS_NAME,
                        PDPARAMS_NAME, GENERATOR_PDPARAMS_NAME, VOCAB_NAME, LABEL_MAP_NAME, MODEL_CARD_NAME, "inference",
                        "tokenizer_config.json"))


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output(path: str, kind: Optional[OutputKind] = None, inputs: Iterable[Optional[str]] = (),
                 overwrite: bool = False) -> str:
    """Refuse an output path whose replacement would lose something not asked for: an input (the
    output is, or holds, one of `inputs`; never allowed), a file or link (a folder never replaces
    it), or a non-empty folder that is not a previous output of `kind` (unless `overwrite`).
    Returns the absolute path."""
    real = os.path.realpath(path)
    for i in inputs:
        if i is not None and os.path.exists(i) and _inside(os.path.realpath(i), real):
            raise OutputError(f"output {path} {'is' if os.path.realpath(i) == real else 'contains'} the input "
                              f"{i}; writing it would delete the input: choose another output folder")
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        raise OutputError(f"output {path} exists and is {'a link' if os.path.islink(path) else 'not a folder'}; "
                          f"refusing to replace it with a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite and not (kind and kind.matches(path)):
        shown = sorted(os.listdir(path))
        raise OutputError(
            f"output folder {path} is not empty ({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''}) "
            f"and is not a previous {kind.name if kind else 'output'}; choose an empty or new folder, or pass "
            f"--overwrite (overwrite=True) to replace its contents")
    return os.path.abspath(path)


def file_digest(path: str, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- this package's own folder (caches, keys) --------------------------------------------------------
def package_home() -> str:
    """paddle_electra's one folder: $PADDLE_ELECTRA_HOME, else ~/.paddle_electra/models. Registered
    models live in <home>/<name>/, caches and keys in dot folders beside them (.kernel_cache,
    .inference_cache, .inference_key, .tmp)."""
    return os.environ.get("PADDLE_ELECTRA_HOME") or os.path.join(os.path.expanduser("~"), ".paddle_electra", "models")


def lock_path(path: str) -> str:
    """The lock file of folder `path`: `<parent>/.<name>.lock`, beside the folder, never inside it (a
    lock inside a folder that atomic_dir replaces would be replaced with it, and a second process would
    lock the new folder's file while the first still holds the old one's)."""
    path = os.path.abspath(path)
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")


@contextlib.contextmanager
def folder_lock(folder: str):
    """An exclusive lock on folder `folder` (which need not exist), held by one process at a time: its
    lock file (lock_path) lives beside it, so the folder itself can be replaced while the lock is held.
    Where the lock file cannot be made (a read-only parent), nobody can write the folder either and no
    lock is taken."""
    import fcntl
    path = lock_path(folder)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = open(path, "a")
    except OSError:
        try:
            f = open(path, "r")  # read-only parent: lock the existing file, if there is one
        except OSError:
            yield
            return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- temporary folders of a running process ------------------------------------------------------------
TEMPORARY_DIR = ".tmp"  # under package_home(): what a process writes for as long as it runs


def temporary_root() -> str:
    return os.path.join(package_home(), TEMPORARY_DIR)


def _host_tag() -> str:
    import hashlib
    import socket
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_time(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot (/proc/<pid>/stat field 22): with the
    pid it names one process, never a later one that reuses the pid. "0" where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


_TEMPORARY_NAME = re.compile(r"^(?P<prefix>[a-z]+)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+$")


def temporary_folder(prefix: str) -> str:
    """A new folder `<prefix>-<host>-<pid>-<start time>-<random>` under $PADDLE_ELECTRA_HOME/.tmp, for
    files that live as long as this process (the caller removes it; a weakref.finalize or atexit hook
    runs on a normal exit, and the servers turn SIGTERM into one). What a killed process left there is
    removed by remove_stale_temporaries, which this calls first."""
    if not re.fullmatch(r"[a-z]+", prefix):
        raise ValueError(f"prefix must be lower-case letters, got {prefix!r}")
    root = temporary_root()
    os.makedirs(root, exist_ok=True)
    remove_stale_temporaries()
    return tempfile.mkdtemp(prefix=f"{prefix}-{_owner_tag()}-", dir=root)


def _owner_tag() -> str:
    """`<host>-<pid>-<start time>`: names this process in the temporaries it makes (stale once it is gone)."""
    pid = os.getpid()
    return f"{_host_tag()}-{pid}-{_start_time(pid)}"


def _owner_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return start == "0" or _start_time(pid) in (start, "0")


def remove_stale_temporaries() -> list:
    """Remove the temporary folders (temporary_folder) of this machine whose process is gone (killed
    with SIGKILL, or with a signal it did not handle); those of live processes and of other machines
    (a shared home) are kept. Returns the paths removed."""
    root = temporary_root()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    removed, host = [], _host_tag()
    for name in names:
        m = _TEMPORARY_NAME.match(name)
        path = os.path.join(root, name)
        if m is None or m["host"] != host or os.path.islink(path) or not os.path.isdir(path):
            continue
        if not _owner_alive(int(m["pid"]), m["start"]):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


# --- atomic writes -----------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_dir(path: str, check=None):
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename, on error
    it is removed, so `path` is never left half written. A folder is replaced, never a file or a link;
    `check()` (when given) runs before and again just before the rename. The library's own folders
    (checkpoints, caches) use this directly; what users name goes through `output_dir`."""
    def checks():
        if check is not None:
            check()
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            raise OutputError(f"{path} exists and is not a folder; refusing to replace it with a folder")

    checks()
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    remove_stale_siblings(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-{_owner_tag()}-", dir=parent)
    try:
        yield tmp
        _public_permissions(tmp)
        checks()
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-{_owner_tag()}-", dir=parent)
            os.rename(path, os.path.join(old, "x"))
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(os.path.join(old, "x"), path)  # put the previous folder back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_siblings(path: str) -> list:
    """Remove what atomic_dir left beside `path` in a process that was killed (SIGKILL, power loss) on
    this machine: its `.<name>.tmp-*` folder (half written) and its `.<name>.old-*` folder (the previous
    folder, put back in place when `path` is missing: the kill came between the two renames). Folders
    of live processes and other machines are kept. Returns the paths removed."""
    parent, name = os.path.split(os.path.abspath(path))
    pattern = re.compile(r"^\." + re.escape(name) + r"\.(?P<kind>tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-"
                         r"(?P<start>\d+)-[A-Za-z0-9_]+$")
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed, host = [], _host_tag()
    for n in names:
        m = pattern.match(n)
        stale = os.path.join(parent, n)
        if m is None or m["host"] != host or os.path.islink(stale) or _owner_alive(int(m["pid"]), m["start"]):
            continue
        previous = os.path.join(stale, "x")
        if m["kind"] == "old" and os.path.isdir(previous) and not os.path.lexists(path):
            os.rename(previous, path)  # the replaced folder was moved aside and the new one never came
        shutil.rmtree(stale, ignore_errors=True)
        removed.append(stale)
    return removed


def output_dir(path: str, kind: Optional[OutputKind] = None, inputs: Iterable[Optional[str]] = (),
               overwrite: bool = False):
    """atomic_dir for a folder the user named: `check_output`'s rule, before the work and again
    before the rename."""
    inputs = list(inputs)
    return atomic_dir(path, check=lambda: check_output(path, kind, inputs, overwrite))


def _public_permissions(root: str):
    # mkdtemp makes a 0700 folder; give the result the modes a plain mkdir/open would have
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~umask)


def path_inside(folder: str, name: str, what: str = "file", roots: Sequence[str] = ()) -> str:
    """`folder/name` for a file read from an input folder (`name` may come from a file there, e.g. a
    shard list): refuse absolute paths, `..`, and links that lead out of the folder (or out of the
    extra `roots`), so a folder cannot hand over an arbitrary file of the system."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        raise CheckpointError(f"{folder}: {what} {name!r} is not a plain path inside the folder")
    path = os.path.join(folder, name)
    real = os.path.realpath(path)
    if not any(_inside(real, os.path.realpath(r)) for r in (folder, *roots)):
        raise CheckpointError(f"{path} is a link to {real}, out of {folder}; refusing to read through it "
                              f"(copy the file itself into the folder)")
    return path


# --- tensors -------------------------------------------------------------------------------------------
def save_tensors(tensors: Dict[str, np.ndarray], path: str, metadata: Optional[Dict[str, str]] = None):
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path,
              metadata={"format": "paddle", **(metadata or {})})


def load_tensors(path: str) -> Dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise CheckpointError(f"weight file not found: {path}")
    try:
        return load_file(path)
    except Exception as e:  # truncated or corrupt files raise SafetensorError / OSError / ...
        raise CheckpointError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})") from None


def load_pdparams(path: str) -> Dict[str, np.ndarray]:
    """Read a Paddle pickle (.pdparams). Only call this on files you trust."""
    import paddle  # here, not at the top: io is imported by commands that never need paddle
    state = paddle.load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}

"""Read PyTorch `pytorch_model.bin` state dicts into numpy, without torch and without running code.

A `.bin` is a pickle. Plain `pickle.load` calls whatever callables the file names (`os.system`
included), so this reader unpickles with a whitelist: the few globals a state dict of tensors
needs are replaced by local numpy stand-ins, and any other global is refused with an error that
names it. Nothing from torch is imported.

Two layouts are read:
- the zip layout (torch >= 1.6): `<root>/data.pkl` is the pickle, `<root>/data/<key>` holds each
  storage's raw bytes, `<root>/byteorder` says "little" or "big" (absent means little);
- the legacy layout (older torch): magic number, protocol version and system info pickles, the
  main pickle, a pickle listing the storage keys, then each storage as an int64 element count
  followed by its bytes.
A storage is referenced from the pickle by a persistent id
`("storage", <storage class>, key, location, numel[, view_metadata])`; a tensor is rebuilt by
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Dict, Tuple

import numpy as np

from . import CheckpointError


class UnsafePickleError(CheckpointError):
    """The pickle asks for something a state dict of tensors never needs."""


class _StorageType:
    """Stand-in for torch.FloatStorage and friends: only carries the element dtype."""

    def __init__(self, name: str, dtype: str):
        self.name, self.dtype = name, dtype

    def __repr__(self):
        return f"torch.{self.name}"


# torch storage class -> numpy dtype ("bfloat16" is widened to float32 after reading)
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
_STORAGE_TYPES = {name: _StorageType(name, dt) for name, dt in _STORAGE_DTYPES.items()}


class _Storage:
    """A storage read from the file: a flat numpy array of its dtype."""

    def __init__(self, data: np.ndarray):
        self.data = data


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """numpy version of torch._utils._rebuild_tensor(_v2): a strided view of the storage, copied.
    Bounds are checked first: as_strided would otherwise read memory outside the storage."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(f"tensor rebuilt from {type(storage).__name__}, not from a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"bad tensor layout: offset {offset}, size {size}, stride {stride}")
    data = storage.data
    if 0 in size:
        return np.zeros(size, dtype=data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= data.size:
        raise CheckpointError(
            f"tensor of size {size}, stride {stride}, offset {offset} reaches element {last} of a storage "
            f"of {data.size}")
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=[s * data.itemsize for s in stride], writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad, backward_hooks, *_state):
    return data


# (module, name) -> the local object the pickle gets instead. Everything else is refused.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, read_storage, source: str, rebuild=_rebuild_tensor):
        super().__init__(file, encoding="utf-8")
        self._read_storage = read_storage  # (key, storage type, numel) -> flat numpy array
        self._source = source
        self._rebuild = rebuild
        self._storages: Dict[str, _Storage] = {}

    def find_class(self, module, name):
        try:
            obj = _ALLOWED[(module, name)]
            return self._rebuild if obj is _rebuild_tensor else obj
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}': a PyTorch state dict of tensors "
                f"never needs it, and unpickling it could run code. Only plain tensor state dicts are read "
                f"(allowed: {', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED if m != 'torch'))} and "
                f"torch storage classes).") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] in ("storage", b"storage")):
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {pid!r:.200}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self._source}: storage of type {storage_type!r:.100} is not a torch storage class")
        key = key.decode() if isinstance(key, bytes) else str(key)
        if key not in self._storages:
            self._storages[key] = _Storage(self._read_storage(key, storage_type, int(numel)))
        storage = self._storages[key]
        if view is not None:  # legacy files: a view into a larger storage
            view_key, offset, view_size = view
            storage = _Storage(storage.data[int(offset):int(offset) + int(view_size)])
        return storage


def _to_numpy_dtype(raw: bytes, storage_type: _StorageType, big_endian: bool) -> np.ndarray:
    if storage_type.dtype == "bfloat16":  # no numpy bfloat16: put the 16 bits on top of a float32
        bits = np.frombuffer(raw, dtype=">u2" if big_endian else "<u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    dt = np.dtype(storage_type.dtype)
    if big_endian:
        dt = dt.newbyteorder(">")
    return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))


def _itemsize(storage_type: _StorageType) -> int:
    return 2 if storage_type.dtype == "bfloat16" else np.dtype(storage_type.dtype).itemsize


def _load_zip(path: str) -> object:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pkls) != 1:
            raise CheckpointError(f"{path}: a PyTorch zip checkpoint holds one <root>/data.pkl; found {pkls or 'none'}")
        root = pkls[0][: -len("data.pkl")]
        big_endian = False
        if root + "byteorder" in names:
            order = zf.read(root + "byteorder").decode(errors="replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byte order {order!r}")
            big_endian = order == "big"

        def read_storage(key, storage_type, numel):
            record = f"{root}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path}: storage record {record} is missing")
            raw = zf.read(record)
            want = numel * _itemsize(storage_type)
            if len(raw) < want:
                raise CheckpointError(f"{path}: storage {record} has {len(raw)} bytes, expected {want}")
            return _to_numpy_dtype(raw[:want], storage_type, big_endian)

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])), read_storage, path).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _load_legacy(path: str) -> object:
    with open(path, "rb") as f:
        def plain(what):
            # the header pickles hold only ints, dicts and lists; the whitelist still applies
            return _RestrictedUnpickler(f, _no_storage, f"{path} ({what})").load()

        def _no_storage(*_):
            raise UnsafePickleError(f"{path}: storage referenced from a header pickle")

        try:
            magic = plain("magic number")
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip nor a legacy pickle: {e})") from None
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        if plain("protocol version") != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy PyTorch protocol version")
        sys_info = plain("system info")
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian legacy checkpoints are not supported")

        pending: Dict[str, Tuple[_StorageType, int, np.ndarray]] = {}

        def defer(key, storage_type, numel):
            buf = np.empty(numel, dtype=np.float32 if storage_type.dtype == "bfloat16" else storage_type.dtype)
            pending[key] = (storage_type, numel, buf)
            return buf

        # the storages' bytes come after the pickle: record each tensor, rebuild it once they are read
        def lazy_rebuild(storage, offset, size, stride, *_):
            return _Lazy(storage, offset, size, stride)

        unpickler = _RestrictedUnpickler(f, defer, path, rebuild=lazy_rebuild)
        result = unpickler.load()
        keys = plain("storage keys")
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key not in pending:
                raise CheckpointError(f"{path}: storage {key} listed but never referenced")
            storage_type, numel, buf = pending[key]
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{path}: file ends before storage {key}")
            (count,) = struct.unpack("<q", head)
            nbytes = count * _itemsize(storage_type)
            raw = f.read(nbytes)
            if count != numel or len(raw) != nbytes:
                raise CheckpointError(f"{path}: storage {key} holds {count} elements ({len(raw)} bytes read), "
                                      f"expected {numel}")
            buf[...] = _to_numpy_dtype(raw, storage_type, False)
    return _materialise(result, path)


class _Lazy:
    def __init__(self, *args):
        self.args = args


def _materialise(obj, path):
    if isinstance(obj, _Lazy):
        return _rebuild_tensor(*obj.args)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v, path)) for k, v in obj.items())
    return obj


def load_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """A PyTorch state dict file (`pytorch_model.bin`) as {name: numpy array}, read without torch.
    Raises UnsafePickleError for a pickle that names anything but tensors' building blocks."""
    if not os.path.exists(path):
        raise CheckpointError(f"weight file not found: {path}")
    try:
        state = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
            AttributeError, IndexError, struct.error) as e:
        raise CheckpointError(f"{path}: cannot read PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    return dict(state)

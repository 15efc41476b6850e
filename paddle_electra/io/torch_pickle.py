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
Nothing in the file is trusted: every storage's size is checked against the bytes the file holds
before anything is allocated (a 500-byte pickle may claim terabytes; a deflated record may expand
a thousandfold), a tensor may not hold more elements than its storage, and the unpickler is the
pure-Python one (whose memo is a dict: the C unpickler grows a list to any index a PUT names) with
BUILD allowed only on the dicts the pickle itself made, so a file cannot change anything shared.

A storage is referenced from the pickle by a persistent id
`("storage", <storage class>, key, location, numel[, view_metadata])`; a tensor is rebuilt by
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import reprlib
import struct
import zipfile
from typing import Dict, Tuple

import numpy as np

from . import CheckpointError


class UnsafePickleError(CheckpointError):
    """The pickle asks for something a state dict of tensors never needs."""


class _StorageType:
    """Stand-in for torch.FloatStorage and friends: only carries the element dtype (read-only)."""
    __slots__ = ("_name", "_dtype")

    def __init__(self, name: str, dtype: str):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_dtype", dtype)

    name = property(lambda self: self._name)
    dtype = property(lambda self: self._dtype)

    def __setattr__(self, key, value):
        raise UnsafePickleError(f"{self!r} is read-only")

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
    if int(np.prod(size, dtype=object)) > data.size:  # stride-0 (expanded) views: never in a state dict
        raise CheckpointError(f"tensor of size {size} has more elements than its storage ({data.size})")
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


def _load_build(self):
    # BUILD sets attributes: only on the dicts this pickle made (torch's state dicts carry _metadata),
    # never on a global the pickle named (a storage type, a function)
    state = self.stack.pop()
    inst = self.stack[-1]
    if type(inst) not in (dict, collections.OrderedDict) or not isinstance(state, dict):
        raise UnsafePickleError(f"{self._source}: refusing BUILD (setting attributes) on "
                                f"{type(inst).__name__}; a state dict of tensors never needs it")
    inst.__dict__.update({k: v for k, v in state.items() if k == "_metadata"}) if type(inst) is not dict else None


class _RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: see the module docstring
    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build}

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
            raise UnsafePickleError(f"{self._source}: unexpected persistent id {reprlib.repr(pid)}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self._source}: storage of type {reprlib.repr(storage_type)} is not a "
                                    f"torch storage class")
        key = key.decode() if isinstance(key, bytes) else str(key)
        if not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self._source}: storage {key} has {reprlib.repr(numel)} elements")
        if key not in self._storages:
            self._storages[key] = _Storage(self._read_storage(key, storage_type, numel))
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

        archive_bytes = os.path.getsize(path)

        def read(record):
            # sizes come from the zip's directory: check them before reading (inflating) anything
            info = zf.getinfo(record)
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size > archive_bytes:
                    raise CheckpointError(f"{path}: record {record} claims {info.file_size} bytes, more than the "
                                          f"file's {archive_bytes}")
            elif info.file_size > MAX_EXPANSION * max(info.compress_size, 1 << 20):
                raise CheckpointError(f"{path}: record {record} would inflate {info.compress_size} bytes to "
                                      f"{info.file_size}; refusing (torch.save stores records uncompressed)")
            return zf.read(record)

        def read_storage(key, storage_type, numel):
            record = f"{root}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path}: storage record {record} is missing")
            want, have = numel * _itemsize(storage_type), zf.getinfo(record).file_size
            if have < want:
                raise CheckpointError(f"{path}: storage {record} has {have} bytes, the pickle asks for {want}")
            return _to_numpy_dtype(read(record)[:want], storage_type, big_endian)

        return _RestrictedUnpickler(io.BytesIO(read(pkls[0])), read_storage, path).load()


# a record may inflate to at most this many times its compressed size (or 1 MiB)
MAX_EXPANSION = 20

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _BoundedFile:
    """A file whose reads never ask for more than it holds (the unpickler reads the lengths a pickle
    claims, and a buffered read of n bytes allocates n first)."""

    def __init__(self, f):
        self.f, self.size = f, os.fstat(f.fileno()).st_size

    def remaining(self) -> int:
        return max(0, self.size - self.f.tell())

    def read(self, n=-1):
        return self.f.read(self.remaining() if n is None or n < 0 else min(n, self.remaining()))

    def readinto(self, buf):
        return self.f.readinto(memoryview(buf)[: self.remaining()])

    def readline(self, limit=-1):
        return self.f.readline(limit)

    def tell(self):
        return self.f.tell()


def _load_legacy(path: str) -> object:
    with open(path, "rb") as raw_file:
        f = _BoundedFile(raw_file)
        def plain(what):
            # the header pickles hold only ints, dicts and lists; the whitelist still applies
            return _RestrictedUnpickler(f, _no_storage, f"{path} ({what})").load()

        def _no_storage(*_):
            raise UnsafePickleError(f"{path}: storage referenced from a header pickle")

        try:
            magic = plain("magic number")
        except CheckpointError:
            raise
        except Exception as e:  # any bytes at all: say what the file is not
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a zip nor a legacy pickle: "
                                  f"{type(e).__name__}: {reprlib.repr(str(e))})") from None
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        if plain("protocol version") != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy PyTorch protocol version")
        sys_info = plain("system info")
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian legacy checkpoints are not supported")

        pending: Dict[str, Tuple[_StorageType, int, np.ndarray]] = {}
        claimed = [0]

        def defer(key, storage_type, numel):
            # the storages' bytes follow the pickle: all of them must fit in what is left of the file
            claimed[0] += numel * _itemsize(storage_type) + 8
            if claimed[0] > f.remaining():
                raise CheckpointError(f"{path}: storage {key} of {numel} elements does not fit in the "
                                      f"{f.remaining()} bytes left in the file")
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
    return _materialise(result)


class _Lazy:
    def __init__(self, *args):
        self.args = args


def _materialise(obj, depth=0):
    # a state dict, or one wrapped as {"state_dict": ...}: two levels, never a recursion the file sets
    if isinstance(obj, _Lazy):
        return _rebuild_tensor(*obj.args)
    if isinstance(obj, dict) and depth < 2:
        return collections.OrderedDict((k, _materialise(v, depth + 1)) for k, v in obj.items())
    return obj


def load_torch_state_dict(path: str) -> Dict[str, np.ndarray]:
    """A PyTorch state dict file (`pytorch_model.bin`) as {name: numpy array}, read without torch.
    Raises UnsafePickleError for a pickle that names anything but tensors' building blocks."""
    if not os.path.exists(path):
        raise CheckpointError(f"weight file not found: {path}")
    try:
        state = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except CheckpointError as e:  # every message names the file (the tensor checks do not know it)
        if path in str(e):
            raise
        raise type(e)(f"{path}: {e}") from None
    except Exception as e:  # the file is untrusted input: whatever it makes the parser raise is a bad file
        raise CheckpointError(f"{path}: cannot read PyTorch checkpoint ({type(e).__name__}: "
                              f"{reprlib.repr(str(e))})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {', '.join(map(reprlib.repr, bad[:10]))}")
    return dict(state)

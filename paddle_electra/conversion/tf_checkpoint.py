"""Read TensorFlow checkpoints (the V2 "tensor bundle") without TensorFlow.

A checkpoint `<prefix>` is two kinds of files:
- `<prefix>.index`: a LevelDB-format table (an SSTable: sorted key/value blocks, an index block
  pointing at them and a 48-byte footer). The key "" holds a BundleHeaderProto; every other key
  is a variable name whose value is a BundleEntryProto (dtype, shape, shard, offset, size, crc32c).
  TF writes this table uncompressed.
- `<prefix>.data-<shard>-of-<num_shards>`: the raw little-endian tensor bytes, read here through
  a memory map.

Every block of the index and every tensor is checked against its CRC-32C (stored "masked", as
LevelDB and TF do), so a truncated or corrupted file is reported by name instead of producing
silently wrong weights.
"""
from __future__ import annotations

import codecs
import glob
import os
import re
import struct
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..io import CheckpointError

try:
    from crc32c import crc32c as _crc32c  # hardware CRC-32C (SSE4.2 / ARMv8), ~GB/s
except ImportError:  # pragma: no cover - crc32c is in install_requires
    _crc32c = None

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB's table magic number, also TF's
FOOTER_SIZE = 48                  # two block handles padded to 40 bytes + the 8-byte magic
BLOCK_TRAILER_SIZE = 5            # 1-byte compression type + 4-byte masked crc32c
_CRC_MASK_DELTA = 0xA282EAD8
HEADER_KEY = b""

# TF DataType enum values (types.proto) -> numpy dtype; bfloat16 is widened to float32 on read.
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
           9: np.int64, 10: np.bool_, 14: "bfloat16", 17: np.uint16, 19: np.float16,
           22: np.uint32, 23: np.uint64}
_DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
                8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
                19: "float16", 20: "resource", 21: "variant", 22: "uint32", 23: "uint64"}


class TFCheckpointError(CheckpointError):
    """A TF checkpoint is missing, truncated, corrupt or of an unsupported kind: names the file
    (and the variable when one is concerned)."""


# --- CRC-32C --------------------------------------------------------------------------------------
def crc32c(data) -> int:
    if _crc32c is None:
        raise TFCheckpointError("the `crc32c` package is needed to verify TF checkpoints: pip install crc32c")
    return _crc32c(data)


def unmask_crc(masked: int) -> int:
    """LevelDB/TF store crc32c "masked" (rotated right by 15 bits plus a constant) so that a CRC of
    data that itself contains CRCs is not degenerate."""
    rot = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF


# --- protobuf wire format (only what BundleEntryProto / BundleHeaderProto need) ------------------
def _varint(buf: bytes, pos: int, end: int) -> Tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> Dict[int, list]:
    """field number -> list of values (ints for varint/fixed, bytes for length-delimited)."""
    out: Dict[int, list] = {}
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            if pos + 8 > end:
                raise ValueError("truncated fixed64")
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise ValueError("truncated length-delimited field")
            value, pos = bytes(buf[pos:pos + n]), pos + n
        elif wire == 5:
            if pos + 4 > end:
                raise ValueError("truncated fixed32")
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {field}")
        out.setdefault(field, []).append(value)
    return out


def _int64(v: int) -> int:  # varints carry int64 as two's complement in 64 bits
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class TensorEntry:
    """One variable's BundleEntryProto."""
    name: str
    dtype_enum: int
    shape: Tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc32c: Optional[int]
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return _DTYPE_NAMES.get(self.dtype_enum, f"DataType {self.dtype_enum}")


def _parse_entry(name: str, value: bytes) -> TensorEntry:
    # BundleEntryProto: dtype=1, shape=2 (TensorShapeProto: dim=2 {size=1}, unknown_rank=3),
    # shard_id=3, offset=4, size=5, crc32c=6 (fixed32), slices=7
    f = _proto_fields(value)
    shape = []
    for shape_msg in f.get(2, [])[-1:]:
        sf = _proto_fields(shape_msg)
        if sf.get(3, [0])[-1]:
            raise ValueError("shape has unknown rank")
        shape = [_int64(_proto_fields(d).get(1, [0])[-1]) for d in sf.get(2, [])]
    return TensorEntry(name=name, dtype_enum=f.get(1, [0])[-1], shape=tuple(shape),
                       shard_id=f.get(3, [0])[-1], offset=_int64(f.get(4, [0])[-1]),
                       size=_int64(f.get(5, [0])[-1]), masked_crc32c=f.get(6, [None])[-1],
                       sliced=bool(f.get(7)))


# --- the SSTable ----------------------------------------------------------------------------------
def _block_handle(buf: bytes, pos: int, end: int) -> Tuple[int, int, int]:
    offset, pos = _varint(buf, pos, end)
    size, pos = _varint(buf, pos, end)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, path: str, what: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data):
        raise TFCheckpointError(f"{path}: truncated index file ({what} needs bytes up to {end}, the file "
                                f"has {len(data)})")
    block = data[offset:offset + size]
    ctype = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if unmask_crc(stored) != crc32c(data[offset:offset + size + 1]):  # crc covers block + type byte
        raise TFCheckpointError(f"{path}: {what} at byte {offset} fails its crc32c check (corrupt index file)")
    if ctype != 0:
        kind = {1: "snappy"}.get(ctype, f"type {ctype}")
        raise TFCheckpointError(f"{path}: {what} is {kind}-compressed; TF writes checkpoint indexes "
                                f"uncompressed, so this is not a TF tensor-bundle index")
    return block


def _block_entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
    """Yield (key, value) of a block: entries with prefix-compressed keys (shared, non_shared,
    value_length varints), then the restart offsets (uint32 each) and their count (uint32)."""
    if len(block) < 4:
        raise ValueError("block shorter than its restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise ValueError(f"block claims {num_restarts} restart points, more than fit")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, limit))
    if any(r >= max(limit, 1) for r in restarts):
        raise ValueError("restart point beyond the block's entries")
    pos, key = 0, b""
    while pos < limit:
        start = pos
        shared, pos = _varint(block, pos, limit)
        non_shared, pos = _varint(block, pos, limit)
        value_len, pos = _varint(block, pos, limit)
        if start in restarts and shared:
            raise ValueError("an entry at a restart point shares a key prefix")
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise ValueError("entry runs past the block")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_len]
        pos += value_len


def read_table(path: str) -> List[Tuple[bytes, bytes]]:
    """All (key, value) pairs of a LevelDB-format table file, in key order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TFCheckpointError(f"checkpoint index not found: {path}") from None
    if len(data) < FOOTER_SIZE:
        raise TFCheckpointError(f"{path}: truncated index file ({len(data)} bytes, shorter than the "
                                f"{FOOTER_SIZE}-byte table footer)")
    magic = struct.unpack_from("<Q", data, len(data) - 8)[0]
    if magic != TABLE_MAGIC:
        raise TFCheckpointError(f"{path}: not a TF checkpoint index (bad table magic number; is the file "
                                f"truncated, or a V1 checkpoint?)")
    footer = len(data) - FOOTER_SIZE
    try:
        _, _, pos = _block_handle(data, footer, len(data) - 8)  # the metaindex block: unused by TF
        index_off, index_size, _ = _block_handle(data, pos, len(data) - 8)
        out = []
        for _, handle in _block_entries(_read_block(data, index_off, index_size, path, "the index block")):
            off, size, _ = _block_handle(handle, 0, len(handle))
            out.extend(_block_entries(_read_block(data, off, size, path, "a data block")))
    except ValueError as e:
        raise TFCheckpointError(f"{path}: corrupt index file ({e})") from None
    return out


# --- the checkpoint -------------------------------------------------------------------------------
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}$")


def resolve_prefix(path: str) -> str:
    """A checkpoint prefix from: a prefix; a folder with a `checkpoint` file (its
    model_checkpoint_path, relative to the folder or, when an absolute one has moved, looked up by
    base name there); a folder with exactly one `*.index` (HFL's zips ship no `checkpoint` file);
    or any one of a checkpoint's own files (.index, .data-*, .meta)."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        state = os.path.join(path, "checkpoint")
        if os.path.exists(state):
            with open(state, encoding="utf-8") as f:
                m = re.search(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', f.read(), re.M)
            if not m:
                raise TFCheckpointError(f"{state}: no model_checkpoint_path line")
            # text-format escapes (octal bytes for non-ASCII paths) -> the UTF-8 path
            named = codecs.escape_decode(m.group(1).encode("utf-8"))[0].decode("utf-8")
            for cand in (os.path.join(path, named), os.path.join(path, os.path.basename(named))):
                if os.path.exists(cand + ".index"):
                    return cand
            raise TFCheckpointError(f"{state} names checkpoint {named!r}, but {named}.index does not exist "
                                    f"(nor {os.path.basename(named)}.index in {path})")
        indexes = _indexes_in(path)
        if len(indexes) == 1:
            return indexes[0][: -len(".index")]
        if not indexes:
            below = [i for d in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, d))
                     and d != "__MACOSX" for i in _indexes_in(os.path.join(path, d))]
            hint = f"; found {', '.join(i[: -len('.index')] for i in below)}: pass that" if below else ""
            raise TFCheckpointError(f"{path}: no TF checkpoint here (no `checkpoint` file and no *.index file)"
                                    f"{hint}")
        raise TFCheckpointError(f"{path}: several checkpoints and no `checkpoint` file to choose one; pass a "
                                f"prefix: " + ", ".join(i[: -len(".index")] for i in indexes))
    for suffix in (".index", ".meta"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    if _DATA_SUFFIX.search(path):
        return _DATA_SUFFIX.sub("", path)
    if os.path.exists(path + ".index"):
        return path
    if path.endswith(".zip") and os.path.isfile(path):
        raise TFCheckpointError(f"{path} is a zip archive: unzip it and pass the folder")
    raise TFCheckpointError(f"TF checkpoint not found: {path} (expected {path}.index, or a folder "
                            f"holding a checkpoint)")


def _indexes_in(folder: str) -> List[str]:
    # `._*` are macOS resource-fork files that zips made on a Mac can carry
    return sorted(i for i in glob.glob(os.path.join(glob.escape(folder), "*.index"))
                  if not os.path.basename(i).startswith("._"))


class TFCheckpoint:
    """A TF V2 checkpoint opened for reading: `names()`, `shape(name)`, `read(name)`.

    The index is parsed whole on opening (it is small); data shards are memory-mapped on first use
    and each tensor's crc32c is checked when it is read."""

    def __init__(self, path: str):
        self.prefix = resolve_prefix(path)
        self.index_path = self.prefix + ".index"
        entries = read_table(self.index_path)
        if not entries or entries[0][0] != HEADER_KEY:
            raise TFCheckpointError(f"{self.index_path}: no bundle header entry; not a TF V2 checkpoint")
        try:
            # BundleHeaderProto: num_shards=1, endianness=2 (0 little, 1 big), version=3
            header = _proto_fields(entries[0][1])
            self.num_shards = header.get(1, [1])[-1]
            self.big_endian = header.get(2, [0])[-1] == 1
        except ValueError as e:
            raise TFCheckpointError(f"{self.index_path}: corrupt bundle header ({e})") from None
        self.entries: Dict[str, TensorEntry] = {}
        for key, value in entries[1:]:
            name = key.decode("utf-8", errors="replace")
            try:
                self.entries[name] = _parse_entry(name, value)
            except ValueError as e:
                raise TFCheckpointError(f"{self.index_path}: corrupt entry for variable {name!r} ({e})") from None
        self._maps: Dict[int, np.ndarray] = {}

    # --- listing ----------------------------------------------------------------------------------
    def names(self) -> List[str]:
        return list(self.entries)

    def shape(self, name: str) -> Tuple[int, ...]:
        return self._entry(name).shape

    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        """name -> shape, like tf.train.list_variables."""
        return {k: e.shape for k, e in self.entries.items()}

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise TFCheckpointError(f"{self.prefix}: no variable {name!r}") from None

    # --- reading ----------------------------------------------------------------------------------
    def data_path(self, shard_id: int) -> str:
        return f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}"

    def _shard(self, shard_id: int, name: str) -> np.ndarray:
        if shard_id not in self._maps:
            if not 0 <= shard_id < self.num_shards:
                raise TFCheckpointError(f"{self.index_path}: variable {name!r} is in shard {shard_id}, but the "
                                        f"checkpoint has {self.num_shards}")
            path = self.data_path(shard_id)
            if not os.path.exists(path):
                raise TFCheckpointError(f"checkpoint data file not found: {path} (needed for {name!r})")
            size = os.path.getsize(path)
            self._maps[shard_id] = (np.memmap(path, dtype=np.uint8, mode="r") if size
                                    else np.zeros(0, np.uint8))
        return self._maps[shard_id]

    def read(self, name: str) -> np.ndarray:
        """The variable's value as a numpy array (a copy; bfloat16 comes back as float32)."""
        e = self._entry(name)
        if e.sliced:
            raise TFCheckpointError(f"{self.index_path}: variable {name!r} is saved in slices (a partitioned "
                                    f"variable); not supported")
        dtype = _DTYPES.get(e.dtype_enum)
        if dtype is None:
            raise TFCheckpointError(f"{self.index_path}: variable {name!r} has dtype {e.dtype_name}, which "
                                    f"this reader does not support")
        item = 2 if isinstance(dtype, str) else np.dtype(dtype).itemsize
        count = int(np.prod(e.shape, dtype=np.int64))
        if e.size != count * item:
            raise TFCheckpointError(f"{self.index_path}: variable {name!r} claims {e.size} bytes, but shape "
                                    f"{list(e.shape)} of {e.dtype_name} needs {count * item}")
        data = self._shard(e.shard_id, name)
        path = self.data_path(e.shard_id)
        if e.offset < 0 or e.offset + e.size > data.shape[0]:
            raise TFCheckpointError(f"{path}: truncated data file: variable {name!r} needs bytes "
                                    f"[{e.offset}, {e.offset + e.size}), the file has {data.shape[0]}")
        raw = data[e.offset:e.offset + e.size]
        if e.masked_crc32c is not None and crc32c(raw) != unmask_crc(e.masked_crc32c):
            raise TFCheckpointError(f"{path}: variable {name!r} fails its crc32c check (bytes "
                                    f"[{e.offset}, {e.offset + e.size}) are corrupt)")
        order = ">" if self.big_endian else "<"
        if isinstance(dtype, str):  # bfloat16: the top half of a float32
            bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(e.shape)
        arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(order))
        return arr.astype(np.dtype(dtype).newbyteorder("="), copy=True).reshape(e.shape)

    def read_all(self, names=None) -> Dict[str, np.ndarray]:
        return {n: self.read(n) for n in (self.names() if names is None else names)}

    def close(self):
        self._maps.clear()  # drops the memory maps (numpy closes them when collected)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"TFCheckpoint({self.prefix!r}, {len(self.entries)} variables)"


def list_variables(path: str) -> Dict[str, Tuple[int, ...]]:
    with TFCheckpoint(path) as ckpt:
        return ckpt.shapes()


def load_variable(path: str, name: str) -> np.ndarray:
    with TFCheckpoint(path) as ckpt:
        return ckpt.read(name)

"""A built pretraining folder (pretraining.data writes it) as the trainer reads it: the format, the
memory-mapped examples (PretrainingData) and the deterministic, resumable order in which each
process reads them (ExampleOrder).

On disk (one shard per work unit):
  shard-00000.bin   token ids of all examples back to back (uint16 when the vocab fits), with
                    [CLS]/[SEP], without padding
  shard-00000.idx   int64 [n, 3]: start offset, length, length of `[CLS] A [SEP]`
  index.json        format, max_seq_length, dtype, vocab md5, shards and counts, a summary
The trainer memory-maps the shards it reads (each rank its own range of them, at most
MAX_MAPPED_BYTES at once), so a corpus larger than memory or address space streams from the page cache.
"""
from __future__ import annotations

import collections
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..io import DataError, file_digest  # one class for every data error: here a pretraining data folder is missing,
# incomplete or does not fit the run

FORMAT = "paddle-electra-pretraining-v1"
INDEX_NAME = "index.json"
MAX_MAPPED_BYTES = 1 << 30  # shards mapped at once by one reader (least recently used unmapped first)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def file_md5(path: str) -> str:
    return file_digest(path, "md5")

class PretrainingData:
    """The examples of a built folder. `batch(indices)` -> padded numpy arrays.

    Shards are memory-mapped when an example of theirs is first read and unmapped again (least
    recently used first) once more than `max_mapped_bytes` are mapped, so a process maps only the
    shards of the examples it reads (ExampleOrder gives each rank a contiguous range) and never
    more address space than that bound, whatever the corpus size."""

    def __init__(self, path: str, max_mapped_bytes: int = MAX_MAPPED_BYTES):
        index_file = os.path.join(path, INDEX_NAME)
        if not os.path.exists(index_file):
            raise DataError(f"{path}: no {INDEX_NAME}; build it with pretrain/build_pretraining_dataset.py")
        with open(index_file, encoding="utf-8") as f:
            self.index = json.load(f)
        if self.index.get("format") != FORMAT:
            raise DataError(f"{index_file}: format {self.index.get('format')!r}, expected {FORMAT!r}")
        self.path = path
        self.max_seq_length = int(self.index["max_seq_length"])
        self.special_ids = self.index["special_ids"]
        self._dtype = np.dtype(self.index["dtype"])
        self._shards, starts = [], [0]
        for s in self.index["shards"]:
            bin_path, idx_path = os.path.join(path, s["name"] + ".bin"), os.path.join(path, s["name"] + ".idx")
            for p in (bin_path, idx_path):
                if not os.path.exists(p):
                    raise DataError(f"{path}: shard file {os.path.basename(p)} listed in {INDEX_NAME} is missing")
            n_tok, n_ex = s["tokens"], s["examples"]
            if os.path.getsize(bin_path) != n_tok * self._dtype.itemsize or os.path.getsize(idx_path) != n_ex * 24:
                raise DataError(f"{path}: shard {s['name']} has the wrong size (truncated or overwritten?)")
            self._shards.append((bin_path, idx_path, n_tok, n_ex))
            starts.append(starts[-1] + n_ex)
        self._starts = np.asarray(starts, dtype=np.int64)
        self.num_examples = int(self._starts[-1])
        self.max_mapped_bytes = max_mapped_bytes
        self._mapped: "collections.OrderedDict[int, tuple]" = collections.OrderedDict()
        self._mapped_bytes = 0

    def __len__(self):
        return self.num_examples

    def shard_of(self, i):
        """Shard number(s) holding example(s) i."""
        return np.searchsorted(self._starts, i, side="right") - 1

    def shard_names(self, lo: int, hi: int) -> List[str]:
        """Names of the shards holding examples lo..hi-1."""
        if hi <= lo:
            return []
        first, last = int(self.shard_of(lo)), int(self.shard_of(hi - 1))
        return [self.index["shards"][s]["name"] for s in range(first, last + 1)]

    def _map(self, shard: int):
        m = self._mapped.get(shard)
        if m is not None:
            self._mapped.move_to_end(shard)
            return m
        bin_path, idx_path, n_tok, n_ex = self._shards[shard]
        m = (np.memmap(bin_path, dtype=self._dtype, mode="r", shape=(n_tok,)) if n_tok else np.zeros(0, self._dtype),
             np.memmap(idx_path, dtype=np.int64, mode="r", shape=(n_ex, 3)) if n_ex else np.zeros((0, 3), np.int64))
        self._mapped[shard] = m
        self._mapped_bytes += n_tok * self._dtype.itemsize + n_ex * 24
        while self._mapped_bytes > self.max_mapped_bytes and len(self._mapped) > 1:
            old, _ = self._mapped.popitem(last=False)  # the last reference: numpy unmaps it
            self._mapped_bytes -= self._shards[old][2] * self._dtype.itemsize + self._shards[old][3] * 24
        return m

    def example(self, i: int) -> Tuple[np.ndarray, int]:
        if not 0 <= i < self.num_examples:
            raise IndexError(f"example {i} out of range (0..{self.num_examples - 1})")
        shard = int(self.shard_of(i))
        tokens, idx = self._map(shard)
        start, length, len_a = idx[i - self._starts[shard]]
        return np.array(tokens[start:start + length], dtype=np.int64), int(len_a)

    def token_counts(self, vocab_size: int, max_tokens: Optional[int] = None, chunk: int = 1 << 24):
        """(int64 [vocab_size] count of each token id over the shards, in order, [CLS]/[SEP] included;
        the number of tokens counted), stopping after about `max_tokens` (None: all)."""
        counts, seen = np.zeros(vocab_size, np.int64), 0
        for shard, (_, _, n_tok, _) in enumerate(self._shards):
            tokens, _ = self._map(shard)
            for start in range(0, n_tok, chunk):
                part = np.asarray(tokens[start:start + chunk])
                if part.size and int(part.max()) >= vocab_size:
                    raise DataError(f"{self.path}: token id {int(part.max())} in shard {shard} is outside a "
                                    f"vocab of {vocab_size}")
                counts += np.bincount(part, minlength=vocab_size)
                seen += part.size
                if max_tokens is not None and seen >= max_tokens:
                    return counts, seen
        return counts, seen

    def batch(self, indices: Sequence[int]):
        """input_ids, attention_mask, token_type_ids: int64 [len(indices), max_seq_length]."""
        L = self.max_seq_length
        indices = np.asarray(indices, dtype=np.int64)
        ids = np.zeros((len(indices), L), np.int64)
        mask = np.zeros((len(indices), L), np.int64)
        seg = np.zeros((len(indices), L), np.int64)
        for r in np.argsort(self.shard_of(indices), kind="stable"):  # shard by shard
            x, len_a = self.example(int(indices[r]))
            n = min(len(x), L)
            ids[r, :n], mask[r, :n], seg[r, len_a:n] = x[:n], 1, 1
        return ids, mask, seg


class ExampleOrder:
    """Which examples each rank reads at each step, a pure function of (seed, step), so resuming
    needs only the step.

    The examples are cut into `ranges` contiguous ranges (by default one per process); each range
    is read in a fresh seeded permutation per epoch of its own. The global batch of step s,
    B = world * per_rank, takes B / ranges examples from each range, and rank r takes its r-th
    slice of it: with ranges = world, rank r reads only range r (its shards, never the whole
    corpus). The order depends on `ranges`, not on the number of processes, so a 1-process run
    with ranges=2 and the doubled batch reads exactly the examples of a 2-process run. ranges=1 is
    one permutation of the whole corpus (the order before ranges existed)."""

    def __init__(self, num_examples: int, seed: int, ranges: int = 1):
        if num_examples <= 0:
            raise DataError("the data holds no examples")
        if not 1 <= ranges <= num_examples:
            raise DataError(f"{ranges} example ranges for {num_examples} examples: need 1..{num_examples}")
        self.n, self.seed, self.ranges = num_examples, seed, ranges
        self.bounds = [j * num_examples // ranges for j in range(ranges + 1)]
        self._perms: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()

    def _permutation(self, j: int, epoch: int) -> np.ndarray:
        key = (j, epoch)
        if key not in self._perms:
            n = self.bounds[j + 1] - self.bounds[j]
            seed = [self.seed, epoch] if self.ranges == 1 else [self.seed, epoch, j]
            self._perms[key] = np.random.default_rng(seed).permutation(n)
            if len(self._perms) > 2 * self.ranges:
                self._perms.popitem(last=False)
        return self._perms[key]

    def _check(self, per_rank, world):
        if (per_rank * world) % self.ranges:
            raise DataError(f"the global batch {per_rank} x {world} processes does not split into {self.ranges} "
                            f"example ranges: give a batch or --data-ranges that divides it")

    def rank_range(self, per_rank: int, rank: int = 0, world: int = 1) -> Tuple[int, int]:
        """The examples lo..hi-1 that `rank` reads at every step."""
        self._check(per_rank, world)
        part = per_rank * world // self.ranges
        q = np.array([rank * per_rank, rank * per_rank + per_rank - 1])
        return self.bounds[int(q[0] // part)], self.bounds[int(q[1] // part) + 1]

    def indices(self, step: int, per_rank: int, rank: int = 0, world: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """(example indices, their global positions in the stream) for this rank at `step`."""
        self._check(per_rank, world)
        B = per_rank * world
        part = B // self.ranges
        q = np.arange(rank * per_rank, rank * per_rank + per_rank, dtype=np.int64)
        j, t = q // part, step * part + q % part
        out = np.empty(per_rank, np.int64)
        for jj in np.unique(j):
            lo, n = self.bounds[jj], self.bounds[jj + 1] - self.bounds[jj]
            for epoch in np.unique(t[j == jj] // n):
                sel = (j == jj) & (t // n == epoch)
                out[sel] = lo + self._permutation(int(jj), int(epoch))[t[sel] % n]
        return out, step * B + q

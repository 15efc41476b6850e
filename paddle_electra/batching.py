"""Padding, softmax and the one length-bucketing runner every prediction path uses (fine-tuning's
evaluation, ElectraPredictor.predict_batches, the hub module, dygraph or Paddle Inference alike).

`run_bucketed(run, input_ids, token_type_ids, ...)` sorts the sequences by length, cuts them into
batches, pads each batch only to its own longest sequence, calls `run(ids, types, mask)` (numpy in,
a tuple of numpy arrays out, batch first) and returns one tuple of arrays per sequence, in input
order, with the length axes named by `seq_axes` cut back to the sequence's own length.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np


def pad(rows: Sequence[Sequence[int]], value: int = 0, length: Optional[int] = None) -> np.ndarray:
    """int64 [len(rows), length or the longest row], right-padded with `value`."""
    n = length or max(len(r) for r in rows)
    out = np.full((len(rows), n), value, dtype="int64")
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def log_softmax(x, axis: int = -1) -> np.ndarray:
    """In float64 (probabilities of near-equal logits stay exact)."""
    x = np.asarray(x, dtype="float64")
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def softmax(x, axis: int = -1, dtype: str = "float32") -> np.ndarray:
    return np.exp(log_softmax(x, axis)).astype(dtype)


def run_bucketed(run: Callable[[np.ndarray, np.ndarray, np.ndarray], Tuple[np.ndarray, ...]],
                 input_ids: Sequence[Sequence[int]], token_type_ids: Optional[Sequence[Sequence[int]]] = None,
                 batch_size: int = 32, pad_id: int = 0, pad_multiple: int = 1, min_len: int = 1,
                 max_len: Optional[int] = None, seq_axes: Optional[Sequence[Optional[int]]] = None) -> List[tuple]:
    """One tuple of output arrays per sequence (see the module docstring). Each batch is padded to
    its longest sequence rounded up to a multiple of `pad_multiple` (fewer distinct shapes for a
    shape-cached engine), at least `min_len` and at most `max_len` (a longer sequence is left to
    `run` to reject). `seq_axes[k]`: the axis of output k (counted with the batch axis) that follows
    the input length, or None; without it nothing is trimmed."""
    seqs = [list(map(int, s)) for s in input_ids]
    types = [list(map(int, t)) for t in token_type_ids] if token_type_ids is not None else None
    if types is not None:
        if len(types) != len(seqs):
            raise ValueError(f"token_type_ids has {len(types)} sequences but input_ids has {len(seqs)}")
        for i, (s, t) in enumerate(zip(seqs, types)):
            if len(s) != len(t):
                raise ValueError(f"sequence {i}: {len(s)} input_ids but {len(t)} token_type_ids")
    for i, s in enumerate(seqs):
        if not s:
            raise ValueError(f"sequence {i} is empty")
    if batch_size < 1 or pad_multiple < 1:
        raise ValueError(f"batch_size and pad_multiple must be >= 1, got {batch_size}, {pad_multiple}")
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    results: List = [None] * len(seqs)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        longest = len(seqs[idx[-1]])
        S = max(-(-longest // pad_multiple) * pad_multiple, min_len)
        if max_len is not None:
            S = max(min(S, max_len), longest)
        ids = pad([seqs[i] for i in idx], pad_id, S)
        tt = pad([types[i] for i in idx], 0, S) if types is not None else np.zeros_like(ids)
        mask = pad([[1] * len(seqs[i]) for i in idx], 0, S)
        outs = run(ids, tt, mask)
        outs = tuple(outs) if isinstance(outs, (tuple, list)) else (outs,)
        axes = list(seq_axes) if seq_axes and len(seq_axes) == len(outs) else [None] * len(outs)
        for row, i in enumerate(idx):
            n = len(seqs[i])
            results[i] = tuple(o[row] if a is None else np.take(o[row], np.arange(n), axis=a - 1)
                               for o, a in zip(outs, axes))
    return results

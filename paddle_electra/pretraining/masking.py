"""Dynamic masking and the sampling noise, as the original's pretrain_helpers.mask / sample_from_softmax.

Masking (per example, numpy):
- N = int((mask_prob + 0.005) * max_seq_length) slots;
- candidates: real tokens (attention_mask 1) other than [CLS] [SEP] [MASK] [PAD];
- the number of active slots is max(1, min(N, round(num_real_tokens * mask_prob))), counting every
  real token including [CLS]/[SEP], rounded half to even in float32 as TF does;
- each active slot draws a candidate position uniformly *with replacement*; inactive slots hold
  position 0, id 0, weight 0;
- each slot draws u ~ U(0,1): u < 0.85 puts [MASK] at its position, otherwise the token is kept
  (no random-token replacement). A position drawn twice is masked when either slot says so.

Every random number is drawn from a generator seeded by (seed, stream position of the example), so a
batch is a pure function of the data order: resuming needs no RNG state, and a 2-process run masks
exactly as a 1-process run with the doubled batch. The generator's gumbel noise is drawn the same way.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

MASK_SALT, NOISE_SALT = 1, 2


def max_predictions(mask_prob: float, max_seq_length: int) -> int:
    return int((mask_prob + 0.005) * max_seq_length)


def num_to_predict(num_tokens: np.ndarray, mask_prob: float, n_slots: int) -> np.ndarray:
    # float32 product and round-half-to-even, as tf.round(tf.cast(n, float32) * mask_prob)
    x = np.rint(np.asarray(num_tokens, np.float32) * np.float32(mask_prob)).astype(np.int64)
    return np.maximum(1, np.minimum(n_slots, x))


def candidates_mask(input_ids: np.ndarray, attention_mask: np.ndarray, special_ids: Dict[str, int]) -> np.ndarray:
    cand = attention_mask.astype(bool).copy()
    for k in ("sep", "cls", "mask", "pad"):
        cand &= input_ids != special_ids[k]
    return cand


def mask_example(input_ids: np.ndarray, attention_mask: np.ndarray, special_ids: Dict[str, int], rng: np.random.Generator,
                 mask_prob: float, n_slots: int):
    """One example [L] -> (masked ids [L], positions [N], ids [N], weights [N])."""
    cand = np.flatnonzero(candidates_mask(input_ids, attention_mask, special_ids))
    k = int(num_to_predict(attention_mask.sum(), mask_prob, n_slots))
    positions = np.zeros(n_slots, np.int64)
    draws = rng.integers(0, max(1, len(cand)), size=n_slots)
    keep_draws = rng.random(n_slots)
    weights = np.zeros(n_slots, np.float32)
    if len(cand):  # the original divides by zero here (NaN probabilities); we mask nothing
        positions[:k] = cand[draws[:k]]
        weights[:k] = 1.0
    ids = input_ids[positions] * (weights > 0)
    masked = input_ids.copy()
    to_mask = positions[(keep_draws < 0.85) & (weights > 0)]
    masked[to_mask[to_mask > 0]] = special_ids["mask"]
    return masked, positions, ids.astype(np.int64), weights


def mask_batch(input_ids: np.ndarray, attention_mask: np.ndarray, stream_positions: Sequence[int],
               special_ids: Dict[str, int], seed: int, mask_prob: float = 0.15, n_slots: int = None):
    """Batch [B, L] -> dict of masked_input_ids [B, L], masked_lm_positions, masked_lm_ids,
    masked_lm_weights [B, N]."""
    B, L = input_ids.shape
    N = n_slots or max_predictions(mask_prob, L)
    out = {"masked_input_ids": np.empty_like(input_ids), "masked_lm_positions": np.empty((B, N), np.int64),
           "masked_lm_ids": np.empty((B, N), np.int64), "masked_lm_weights": np.empty((B, N), np.float32)}
    for b in range(B):
        rng = np.random.default_rng([seed, MASK_SALT, int(stream_positions[b])])
        m, p, i, w = mask_example(input_ids[b], attention_mask[b], special_ids, rng, mask_prob, N)
        out["masked_input_ids"][b], out["masked_lm_positions"][b] = m, p
        out["masked_lm_ids"][b], out["masked_lm_weights"][b] = i, w
    return out


def uniform_noise(stream_positions: Sequence[int], n_slots: int, vocab_size: int, seed: int) -> np.ndarray:
    """U(0,1) float32 [B, N, V], one seeded generator per example."""
    out = np.empty((len(stream_positions), n_slots, vocab_size), np.float32)
    for b, pos in enumerate(stream_positions):
        np.random.default_rng([seed, NOISE_SALT, int(pos)]).random(out=out[b], dtype=np.float32)
    return out


def gumbel_noise(stream_positions: Sequence[int], n_slots: int, vocab_size: int, seed: int) -> np.ndarray:
    """The original's gumbel noise -log(-log(u + 1e-9) + 1e-9) in float32, [B, N, V]. Computed here
    with numpy's vectorised float32 log, in place: on CPU this is several times cheaper than the
    same element-wise ops in Paddle, and the sample is still argmax(logits / T + noise)."""
    g = uniform_noise(stream_positions, n_slots, vocab_size, seed)
    g += np.float32(1e-9)
    np.log(g, out=g)
    np.negative(g, out=g)
    g += np.float32(1e-9)
    np.log(g, out=g)
    np.negative(g, out=g)
    return g

"""The replaced-token-detection objective, as the original's run_pretraining.PretrainingModel.

generator on the masked input, at the masked slots only -> MLM loss (weighted mean CE over active
slots) -> a gumbel-max sample of softmax(logits / temperature), no gradient -> the sample written
into the *original* input at every slot position (the 15% kept tokens are replaced too) -> label
"fake" only where the written token differs from the original -> discriminator on that input ->
sigmoid CE over all real tokens -> total = gen_weight * MLM + disc_weight * disc.

Losses are normalised by `denominators` (the number of active slots and of real tokens over the
whole global batch, divided by the number of processes) so that the data-parallel average of the
per-process gradients equals the gradient of one process on the whole batch; with one process and
no accumulation they are the original's sum / (count + 1e-6).
"""
from __future__ import annotations

from dataclasses import dataclass

import paddle
import paddle.nn.functional as F

# order of the values in the `stats` vector the step returns (summed over the batch)
STAT_NAMES = ("mlm_loss_sum", "mlm_correct", "sampled_correct", "num_masked",
              "disc_loss_sum", "disc_correct", "disc_tp", "disc_pred_pos", "disc_label_pos", "num_real")


@dataclass
class RTDConfig:
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    temperature: float = 1.0
    disallow_correct: bool = False  # the original's option (off by default): never sample the true token


def sample_tokens(logits, gumbel, temperature: float, disallow_ids=None):
    """argmax(logits / temperature + gumbel) over the vocabulary, without gradient; `gumbel` is the
    original's -log(-log(u + 1e-9) + 1e-9) noise (masking.gumbel_noise)."""
    with paddle.no_grad():
        logits = logits.detach().astype("float32")
        if temperature != 1.0:
            logits = logits / temperature
        if disallow_ids is not None:
            logits = logits - 1000.0 * F.one_hot(disallow_ids, logits.shape[-1])
        return paddle.argmax(logits + gumbel, axis=-1)


def scatter_update(sequence, updates, positions):
    """The original's scatter_update for ids: sequence [B, L] with `updates` [B, N] written at
    `positions` [B, N]; position 0 is never written (inactive slots point there); a position written
    by several slots gets the integer mean of their values (floor), as the original's sum // count.
    Returns (updated sequence, mask of written positions)."""
    B, L = sequence.shape
    zeros = paddle.zeros([B, L], dtype=sequence.dtype)
    sums = paddle.put_along_axis(zeros, positions, updates.astype(sequence.dtype), axis=1, reduce="add")
    counts = paddle.put_along_axis(zeros, positions, paddle.ones_like(positions, dtype=sequence.dtype),
                                   axis=1, reduce="add")
    not_first = paddle.concat([paddle.zeros([B, 1], sequence.dtype), paddle.ones([B, L - 1], sequence.dtype)], 1)
    counts = counts * not_first
    written = counts > 0
    mean = paddle.floor_divide(sums, paddle.maximum(counts, paddle.ones_like(counts)))
    return paddle.where(written, mean, sequence), written


def rtd_forward(model, batch, gumbel, cfg: RTDConfig, denominators=None):
    """model: ElectraForPreTraining (or its DataParallel wrapper's inner layers: anything with
    .generator and .discriminator). batch: dict of tensors input_ids, attention_mask, token_type_ids,
    masked_input_ids, masked_lm_positions, masked_lm_ids, masked_lm_weights. gumbel: [B, N, V] noise (masking.gumbel_noise).
    denominators: (masked slots, real tokens) to divide the loss sums by; None = this batch's counts.
    Returns (total loss, stats [len(STAT_NAMES)] float32, disc probs [B, L], disc labels [B, L])."""
    input_ids, attention_mask, token_type_ids = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    positions, lm_ids = batch["masked_lm_positions"], batch["masked_lm_ids"]
    weights = batch["masked_lm_weights"].astype("float32")

    # generator: logits at the masked slots only
    logits = model.generator(batch["masked_input_ids"], token_type_ids, attention_mask,
                             masked_positions=positions).astype("float32")
    ce = F.cross_entropy(logits, lm_ids.unsqueeze(-1), reduction="none").squeeze(-1)
    mlm_sum = (ce * weights).sum()

    # fake input for the discriminator
    sampled = sample_tokens(logits, gumbel, cfg.temperature, lm_ids if cfg.disallow_correct else None)
    fake_ids, written = scatter_update(input_ids, sampled, positions)
    labels = paddle.logical_and(written, fake_ids != input_ids).astype("float32")

    disc_logits = model.discriminator(fake_ids, token_type_ids, attention_mask).astype("float32")
    real = attention_mask.astype("float32")
    bce = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none")
    disc_sum = (bce * real).sum()

    if denominators is None:
        n_masked, n_real = weights.sum(), real.sum()
    else:
        n_masked, n_real = denominators
    loss = cfg.gen_weight * mlm_sum / (n_masked + 1e-6) + cfg.disc_weight * disc_sum / (n_real + 1e-6)

    with paddle.no_grad():
        preds = (disc_logits > 0).astype("float32")  # the original: round((sign(logit) + 1) / 2)
        mlm_preds = paddle.argmax(logits, axis=-1)
        stats = paddle.stack([
            mlm_sum.detach(),
            ((mlm_preds == lm_ids).astype("float32") * weights).sum(),
            ((sampled == lm_ids).astype("float32") * weights).sum(),
            weights.sum(),
            disc_sum.detach(),
            ((preds == labels).astype("float32") * real).sum(),
            (preds * labels * real).sum(),
            (preds * real).sum(),
            (labels * real).sum(),
            real.sum(),
        ])
        probs = F.sigmoid(disc_logits) * real
    return loss, stats, probs, labels * real


class RTDModule(paddle.nn.Layer):
    """The nn.Layer that DataParallel (or group-sharded) training wraps: forward = the whole RTD
    objective of `model` (ElectraForPreTraining) under `cfg`, which it reads at every forward (the
    trainer sets cfg.temperature for each step)."""

    def __init__(self, model, cfg: RTDConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch, gumbel, denominators):
        return rtd_forward(self.model, batch, gumbel, self.cfg, denominators)

"""Pretraining metrics from the summed statistics of objective.rtd_forward (the original's metric_fn):
MLM loss and accuracy, sampled MLM accuracy, disc loss, accuracy, precision, recall and AUC."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from .objective import STAT_NAMES


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC (ties count one half), or NaN when only one class is present. The original uses
    tf.metrics.auc (200 thresholds) over all positions with padding as negatives of probability 0;
    here padding is left out, so the number is not inflated by it."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks over ties
    uniq, start, counts = np.unique(s, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def summarize(stats: Sequence[float], gen_weight: float, disc_weight: float) -> Dict[str, float]:
    s = dict(zip(STAT_NAMES, np.asarray(stats, np.float64)))
    div = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    mlm_loss = div(s["mlm_loss_sum"], s["num_masked"])
    disc_loss = div(s["disc_loss_sum"], s["num_real"])
    return {
        "loss": gen_weight * mlm_loss + disc_weight * disc_loss,
        "mlm_loss": mlm_loss,
        "mlm_accuracy": div(s["mlm_correct"], s["num_masked"]),
        "sampled_mlm_accuracy": div(s["sampled_correct"], s["num_masked"]),
        "disc_loss": disc_loss,
        "disc_accuracy": div(s["disc_correct"], s["num_real"]),
        "disc_precision": div(s["disc_tp"], s["disc_pred_pos"]),
        "disc_recall": div(s["disc_tp"], s["disc_label_pos"]),
        "fake_share": div(s["disc_label_pos"], s["num_real"]),
    }


def masked_auc(probs: np.ndarray, labels: np.ndarray, real: np.ndarray) -> float:
    real = np.asarray(real).astype(bool)
    return auc(np.asarray(probs)[real], np.asarray(labels)[real])

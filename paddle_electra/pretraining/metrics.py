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
        # 0 rather than undefined when nothing is predicted (or labelled) replaced, as the original's
        # tf.metrics.precision / recall (their safe division) report it
        "disc_precision": float(s["disc_tp"] / s["disc_pred_pos"]) if s["disc_pred_pos"] else 0.0,
        "disc_recall": float(s["disc_tp"] / s["disc_label_pos"]) if s["disc_label_pos"] else 0.0,
        "fake_share": div(s["disc_label_pos"], s["num_real"]),
    }


def masked_auc(probs: np.ndarray, labels: np.ndarray, real: np.ndarray) -> float:
    real = np.asarray(real).astype(bool)
    return auc(np.asarray(probs)[real], np.asarray(labels)[real])


def read_metrics(path: str):
    """(training, held-out evaluation, probe) records of a run's metrics.jsonl."""
    import json
    train, evals, probes = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if "eval_loss" in r:
                    evals.append(r)
                elif any(k.startswith("probe_") for k in r):
                    probes.append(r)
                else:
                    train.append(r)
    return train, evals, probes


def plot_curves(metrics_jsonl, out_png: str, title: str = "", labels=None) -> str:
    """Training curves (loss, MLM loss and accuracy, disc AUC and loss, lr) from one run's metrics.jsonl,
    or several runs' on the same axes (a list of files; `labels` names them), with the held-out
    evaluations as points; a third row: the discriminator's AUC and recall on the fixed corrupted
    held-out set (fixed_eval; gen = frozen generator's replacements, unigram = corpus-frequency
    draws) and the frozen-encoder probes (`paddle-electra probe`: top layer, mean of tokens and [CLS]).
    Needs matplotlib (the `bench` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = [metrics_jsonl] if isinstance(metrics_jsonl, str) else list(metrics_jsonl)
    labels = list(labels or ([""] if len(files) == 1 else files))
    panels = [("loss", "total loss (1 x MLM + disc_weight x disc)"), ("mlm_loss", "generator MLM loss"),
              ("mlm_accuracy", "MLM accuracy"), ("disc_auc", "discriminator AUC (live)"),
              ("disc_loss", "discriminator loss"), ("lr", "learning rate")]
    fig, axes = plt.subplots(3, 3, figsize=(13, 9.5))
    ax_fixed_auc, ax_fixed_recall, ax_probe = axes[2]
    for i, (path, name) in enumerate(zip(files, labels)):
        train, evals, probes = read_metrics(path)
        if not train:
            raise ValueError(f"{path}: no training records")
        colour = f"C{i}"
        for ax, (key, label) in zip(axes.ravel()[:6], panels):
            ax.plot([r["step"] for r in train], [r.get(key, float("nan")) for r in train], color=colour, alpha=0.8,
                    label=f"{name} train (logging window)".strip())
            if evals and "eval_" + key in evals[0]:
                ax.plot([r["step"] for r in evals], [r["eval_" + key] for r in evals], "o", color=colour,
                        label=f"{name} held-out".strip())
            ax.set_title(label)
        fixed = [r for r in evals if "eval_fixed_gen_auc" in r]
        for ax, metric in ((ax_fixed_auc, "auc"), (ax_fixed_recall, "recall")):
            for kind, style in (("gen", "o-"), ("unigram", "s--")):
                ax.plot([r["step"] for r in fixed], [r.get(f"eval_fixed_{kind}_{metric}", float("nan")) for r in fixed],
                        style, color=colour, label=f"{name} {kind}".strip())
        if probes:
            top = max(int(k.rsplit("layer", 1)[1]) for k in probes[0] if k.startswith("probe_mean_layer"))
            probes = [r for _, r in sorted({r["step"]: r for r in probes}.items())]  # a step probed again: the last
            for kind, style in (("mean", "o-"), ("cls", "s--")):
                ax_probe.plot([r["step"] for r in probes], [r.get(f"probe_{kind}_layer{top}", float("nan")) for r in probes],
                              style, color=colour, label=f"{name} {'mean of tokens' if kind == 'mean' else '[CLS]'}".strip())
    ax_fixed_auc.set_title("disc AUC, fixed corrupted held-out set")
    ax_fixed_recall.set_title("disc recall of replaced, fixed set")
    ax_probe.set_title("frozen-encoder probe accuracy (%), top layer")
    for ax in axes.ravel():
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in (axes[0, 0], ax_fixed_auc, ax_probe):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png

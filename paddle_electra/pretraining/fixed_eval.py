"""A fixed corrupted held-out set: every evaluation's discriminator scored on the same tokens.

The live held-out metrics (Trainer.evaluate, the original's metric_fn) corrupt the held-out examples
with the *current* generator. That generator keeps improving, so its replacements get harder and the
live AUC can fall while the discriminator learns: it cannot show progress. Here the corruptions are
drawn once and stored:

- "gen": the masking of the live evaluation (the same examples, masks and gumbel noise: seed 0) with
  the samples of a frozen generator, the run's at its first evaluation or a given one
  (`--fixed-eval-generator`), at temperature 1; written as the original's `_get_fake_data` writes them;
- "unigram": the same slots, each replaced by a token drawn from the unigram frequencies of the
  training corpus (every token of its shards but [CLS] [SEP] [MASK] [PAD]); a slot drawn twice keeps
  one draw.

A token is "replaced" where the written token differs from the original (the original's label rule).
Stored in a folder (default OUTPUT_DIR/fixed_eval; `--fixed-eval-dir` lets runs share one):
`corruptions.safetensors` (the original ids, attention mask, token types, the scored-token mask, and
per set the corrupted ids and labels) and `manifest.json` (where each set came from, the held-out
data's index.json md5, the file's md5). A later evaluation, a resumed run or another run reads the
same tokens; a folder made for other held-out data is refused.

Scored over the real tokens that are not [CLS] [SEP] (never padding): ROC AUC of the discriminator's
logit (exact, metrics.auc), accuracy, precision and recall of "replaced" at logit > 0 (precision
and recall 0 when nothing is predicted / labelled replaced, as the live metrics), the mean sigmoid
cross-entropy and the replaced share. Keys: fixed_<set>_<metric>.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np

from ..io import atomic_dir, load_tensors, save_tensors
from .train_data import DataError, PretrainingData, file_md5
from .masking import candidates_mask, gumbel_noise, mask_batch, max_predictions
from .metrics import auc

FIXED_DIR = "fixed_eval"
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "corruptions.safetensors"
FORMAT = 1
SETS = ("gen", "unigram")
EVAL_SEED = 0  # the live evaluation's: its masks and gumbel noise
UNIGRAM_SALT = 3  # masking uses 1, the gumbel noise 2
MAX_COUNTED_TOKENS = 100_000_000  # unigram frequencies from at most this many corpus tokens


@dataclass
class FixedSet:
    arrays: Dict[str, np.ndarray]
    manifest: Dict

    @property
    def examples(self) -> int:
        return int(self.arrays["input_ids"].shape[0])

    @property
    def set_id(self) -> str:
        """The md5 of the stored arrays: equal in every evaluation that scores the same tokens."""
        return self.manifest["file_md5"][ARRAYS_NAME]

    # --- storage ----------------------------------------------------------------------------------
    def save(self, folder: str) -> str:
        with atomic_dir(folder) as tmp:
            save_tensors(self.arrays, os.path.join(tmp, ARRAYS_NAME))
            self.manifest["file_md5"] = {ARRAYS_NAME: file_md5(os.path.join(tmp, ARRAYS_NAME))}
            with open(os.path.join(tmp, MANIFEST_NAME), "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, indent=1)
        return folder

    @classmethod
    def load(cls, folder: str) -> "FixedSet":
        mf = os.path.join(folder, MANIFEST_NAME)
        try:
            with open(mf, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{mf}: cannot read the fixed held-out set's manifest ({e})") from None
        if manifest.get("format") != FORMAT:
            raise DataError(f"{mf}: format {manifest.get('format')!r}, expected {FORMAT}")
        path = os.path.join(folder, ARRAYS_NAME)
        want = manifest.get("file_md5", {}).get(ARRAYS_NAME)
        got = file_md5(path) if os.path.exists(path) else None
        if got is None or got != want:
            raise DataError(f"{path}: {'missing' if got is None else f'md5 {got}, saved as {want}'} (changed or "
                            f"corrupt since it was written: remove {folder} to draw the set again)")
        arrays = load_tensors(path)
        missing = [k for k in ["input_ids", "attention_mask", "token_type_ids", "scored"] +
                   [f"{s}_{a}" for s in SETS for a in ("input_ids", "labels")] if k not in arrays]
        if missing:
            raise DataError(f"{path}: no {', '.join(missing)}")
        return cls(arrays, manifest)

    def check_eval_data(self, eval_data: PretrainingData, folder: str):
        md5 = file_md5(os.path.join(eval_data.path, "index.json"))
        if md5 != self.manifest["eval_index_md5"]:
            raise DataError(f"{folder} holds corruptions of the held-out set {self.manifest['eval_data_dir']} "
                            f"(index.json md5 {self.manifest['eval_index_md5']}); --eval-data-dir {eval_data.path} "
                            f"has md5 {md5}: give that held-out set, or another --fixed-eval-dir")

    # --- scoring ----------------------------------------------------------------------------------
    def score(self, discriminator, batch_size: int, amp_ctx: Callable = contextlib.nullcontext) -> Dict[str, float]:
        """The metrics of `discriminator` (an ElectraDiscriminator, dropout turned off here) on every set."""
        import paddle
        a = self.arrays
        scored = a["scored"].astype(bool)
        was_training = discriminator.training
        discriminator.eval()
        out: Dict[str, float] = {}
        try:
            for name in SETS:
                logits = []
                with paddle.no_grad():
                    for s in range(0, self.examples, batch_size):
                        sl = slice(s, s + batch_size)
                        with amp_ctx():
                            z = discriminator(paddle.to_tensor(a[f"{name}_input_ids"][sl].astype(np.int64)),
                                              paddle.to_tensor(a["token_type_ids"][sl].astype(np.int64)),
                                              paddle.to_tensor(a["attention_mask"][sl].astype(np.int64)))
                        logits.append(z.astype("float32").numpy())
                out.update(token_metrics(np.concatenate(logits)[scored], a[f"{name}_labels"][scored], prefix=f"fixed_{name}_"))
        finally:
            if was_training:
                discriminator.train()
        return out


def token_metrics(logits: np.ndarray, labels: np.ndarray, prefix: str = "") -> Dict[str, float]:
    """AUC, accuracy, precision, recall (of label 1 at logit > 0), mean sigmoid CE and the positive share."""
    z, y = np.asarray(logits, np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    pred = z > 0
    tp = int((pred & y).sum())
    bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return {prefix + "auc": auc(z, y),
            prefix + "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
            prefix + "precision": tp / int(pred.sum()) if pred.any() else 0.0,
            prefix + "recall": tp / int(y.sum()) if y.any() else 0.0,
            prefix + "loss": float(bce.mean()) if len(y) else float("nan"),
            prefix + "replaced_share": float(y.mean()) if len(y) else float("nan")}


def unigram_cdf(train_data: PretrainingData, vocab_size: int, max_tokens: int = MAX_COUNTED_TOKENS):
    """(cumulative unigram distribution over the vocab, special tokens excluded; tokens counted)."""
    counts, n = train_data.token_counts(vocab_size, max_tokens)
    for k in ("pad", "cls", "sep", "mask"):
        counts[train_data.special_ids[k]] = 0
    if counts.sum() == 0:
        raise DataError(f"{train_data.path}: no token other than [CLS] [SEP] [MASK] [PAD] to draw from")
    cdf = np.cumsum(counts, dtype=np.float64)
    return cdf / cdf[-1], n


def build(eval_data: PretrainingData, train_data: PretrainingData, generator, num_examples: int,
          mask_prob: float, batch_size: int, generator_source: Dict, amp_ctx: Callable = contextlib.nullcontext
          ) -> FixedSet:
    """Draw both sets on the first `num_examples` held-out examples (see the module docstring).
    `generator`: an ElectraGenerator (the frozen snapshot); `generator_source`: how to name it in the
    manifest."""
    import paddle
    from .objective import sample_tokens, scatter_update
    n = min(num_examples, len(eval_data))
    if n <= 0:
        raise DataError(f"{eval_data.path}: no held-out example to corrupt")
    V = generator.config.vocab_size
    L = eval_data.max_seq_length
    n_slots = max_predictions(mask_prob, L)
    special = eval_data.special_ids
    idx = np.arange(n)
    ids, mask, seg = eval_data.batch(idx)
    m = mask_batch(ids, mask, idx, special, EVAL_SEED, mask_prob, n_slots)
    pos, weights = m["masked_lm_positions"], m["masked_lm_weights"]

    # (a) the frozen generator's samples, as the live evaluation draws them (temperature 1)
    gen_ids = np.empty_like(ids)
    was_training = generator.training
    generator.eval()
    try:
        with paddle.no_grad():
            for s in range(0, n, batch_size):
                sl = slice(s, min(n, s + batch_size))
                t = {k: paddle.to_tensor(v[sl]) for k, v in (("ids", ids), ("mask", mask), ("seg", seg),
                                                                 ("masked", m["masked_input_ids"]), ("pos", pos))}
                with amp_ctx():
                    logits = generator(t["masked"], t["seg"], t["mask"], masked_positions=t["pos"]).astype("float32")
                noise = paddle.to_tensor(gumbel_noise(idx[sl], n_slots, V, EVAL_SEED))
                sampled = sample_tokens(logits, noise, 1.0)
                fake, _ = scatter_update(t["ids"], sampled, t["pos"])
                gen_ids[sl] = fake.numpy()
    finally:
        if was_training:
            generator.train()

    # (b) unigram draws at the same slots
    cdf, counted = unigram_cdf(train_data, V)
    uni_ids = ids.copy()
    for b in range(n):
        rng = np.random.default_rng([EVAL_SEED, UNIGRAM_SALT, int(idx[b])])
        draws = np.minimum(np.searchsorted(cdf, rng.random(n_slots), side="right"), V - 1)
        active = weights[b] > 0
        uni_ids[b, pos[b][active]] = draws[active]

    scored = candidates_mask(ids, mask, special)  # real tokens but [CLS] [SEP] [MASK] [PAD]
    arrays = {"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.uint8),
              "token_type_ids": seg.astype(np.uint8), "scored": scored.astype(np.uint8)}
    manifest = {"format": FORMAT, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "examples": n,
                "max_seq_length": L, "vocab_size": V, "mask_prob": mask_prob, "slots": n_slots, "seed": EVAL_SEED,
                "eval_data_dir": os.path.abspath(eval_data.path),
                "eval_index_md5": file_md5(os.path.join(eval_data.path, "index.json")),
                "scored_tokens": int(scored.sum()), "sets": {}}
    for name, fake in (("gen", gen_ids), ("unigram", uni_ids)):
        labels = (fake != ids) & mask.astype(bool)
        arrays[f"{name}_input_ids"], arrays[f"{name}_labels"] = fake.astype(np.int32), labels.astype(np.uint8)
        manifest["sets"][name] = {"replaced_share": float(labels[scored].mean()) if scored.any() else 0.0}
    manifest["sets"]["gen"].update(generator_source, temperature=1.0)
    manifest["sets"]["unigram"].update(data_dir=os.path.abspath(train_data.path), tokens_counted=int(counted),
                                       data_index_md5=file_md5(os.path.join(train_data.path, "index.json")))
    return FixedSet(arrays, manifest)


def frozen_generator(path: str):
    """The generator of `path`: a pretraining dir (an export), a checkpoint folder or a run folder
    (its newest checkpoint)."""
    from ..io import GENERATOR_CONFIG_NAME
    from ..modeling import ElectraGenerator
    from .checkpoint import find_checkpoint
    src = path if os.path.exists(os.path.join(path, GENERATOR_CONFIG_NAME)) else find_checkpoint(path)
    return ElectraGenerator.from_pretrained(src), os.path.abspath(src)


def load_or_none(folder: str, eval_data: Optional[PretrainingData]) -> Optional[FixedSet]:
    """The set stored in `folder` (checked against `eval_data`), or None when there is none yet."""
    if not os.path.exists(os.path.join(folder, MANIFEST_NAME)):
        return None
    fixed = FixedSet.load(folder)
    if eval_data is not None:
        fixed.check_eval_data(eval_data, folder)
    return fixed

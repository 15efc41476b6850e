"""The fixed corrupted held-out set (issue 20 item 2): corruptions drawn once (a frozen generator's and
unigram draws), scored at every evaluation over real tokens only; the same tokens across evaluations,
a resume and another run; an untrained discriminator scores ~0.5, a trained one higher; the frozen-
encoder probes of a checkpoint go to its run's metrics.jsonl. Tiny configs on CPU."""
import json
import os
import shutil
import subprocess

import numpy as np
import paddle
import pytest

from paddle_electra.pretraining import fixed_eval
from paddle_electra.pretraining.train_data import PretrainingData
from paddle_electra.pretraining.masking import candidates_mask
from test_pretraining_trainer import PY, ROOT, _args, _env, _run, _tiny_configs, data_dir  # noqa: F401

SPECIAL = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}


class _LookupDisc:
    """A stand-in discriminator: the logit of each token is a function of its id."""
    training = False

    def __init__(self, table):
        self.table = table

    def eval(self):
        pass

    def train(self):
        pass

    def __call__(self, ids, seg, mask):
        return paddle.to_tensor(self.table[ids.numpy()].astype("float32"))


def test_scored_over_real_tokens_only_an_exact_small_case():
    orig = np.array([[101, 200, 300, 201, 301, 202, 102, 0, 0]])
    fake = np.array([[101, 200, 900, 201, 901, 202, 102, 0, 0]])
    mask = (orig != 0).astype(np.uint8)
    labels = ((fake != orig) & (mask > 0)).astype(np.uint8)
    arrays = {"input_ids": orig.astype(np.int32), "attention_mask": mask, "token_type_ids": np.zeros_like(mask),
              "scored": candidates_mask(orig, mask, SPECIAL).astype(np.uint8)}
    for s in fixed_eval.SETS:
        arrays[f"{s}_input_ids"], arrays[f"{s}_labels"] = fake.astype(np.int32), labels
    table = np.zeros(1000)
    table[[101, 102, 0]] = 10.0  # [CLS] [SEP] [PAD] "look replaced": they must not count
    table[[200, 201, 202]] = [-2.0, 0.5, -3.0]
    table[[900, 901]] = [2.0, -1.0]
    m = fixed_eval.FixedSet(arrays, {}).score(_LookupDisc(table), batch_size=1)
    # scored: 200 900 201 901 202 -> logits -2 2 0.5 -1 -3, labels 0 1 0 1 0
    assert m["fixed_gen_auc"] == pytest.approx(5 / 6)  # positives 2, -1 over negatives -2, 0.5, -3: 3 + 2 of 6 pairs
    assert m["fixed_gen_accuracy"] == pytest.approx(3 / 5)
    assert m["fixed_gen_precision"] == 0.5 and m["fixed_gen_recall"] == 0.5
    assert m["fixed_gen_replaced_share"] == pytest.approx(2 / 5)
    z, y = np.array([-2, 2, 0.5, -1, -3.0]), np.array([0, 1, 0, 1, 0])
    assert m["fixed_gen_loss"] == pytest.approx(np.mean(np.log1p(np.exp(-z * (2 * y - 1)))))
    assert m["fixed_unigram_auc"] == m["fixed_gen_auc"]


def _pair(tmp, seed=42):
    from paddle_electra.config import ElectraConfig
    from paddle_electra.modeling import ElectraForPreTraining
    disc, gen = _tiny_configs(tmp, dropout=0.0)
    paddle.seed(seed)
    return ElectraForPreTraining(ElectraConfig.from_json_file(disc), ElectraConfig.from_json_file(gen))


def test_untrained_scores_about_half_and_a_few_steps_on_an_easy_corruption_score_higher(data_dir, tmp_path):  # noqa: F811
    data = PretrainingData(data_dir)
    model = _pair(str(tmp_path))
    held = PretrainingData(data_dir)
    fixed = fixed_eval.build(held, data, model.generator, 96, 0.15, 32, {"source": "untrained"})
    a = fixed.arrays
    scored = a["scored"].astype(bool)
    assert not scored[:, 0].any() and not scored[a["attention_mask"] == 0].any()  # [CLS], padding never scored
    assert (a["gen_labels"][~scored] == 0).all() and (a["unigram_labels"][~scored] == 0).all()
    for s in fixed_eval.SETS:
        share = a[f"{s}_labels"][scored].mean()
        assert 0.08 < share < 0.2  # about the 15% of masked slots
    before = fixed.score(model.discriminator, 32)
    assert abs(before["fixed_gen_auc"] - 0.5) < 0.1 and abs(before["fixed_unigram_auc"] - 0.5) < 0.1
    # an easy corruption: uniform random tokens (what an untrained generator samples) on training examples
    # the set does not hold; a few steps of the discriminator alone
    disc = model.discriminator
    disc.train()
    opt = paddle.optimizer.Adam(learning_rate=2e-3, parameters=disc.parameters())
    rng = np.random.default_rng(0)
    for step in range(40):
        ids, mask, seg = data.batch(np.arange(200 + 32 * step, 232 + 32 * step) % len(data))
        replace = candidates_mask(ids, mask, SPECIAL) & (rng.random(ids.shape) < 0.15)
        fake = np.where(replace, rng.integers(1000, 21128, ids.shape), ids)
        labels = (fake != ids).astype("float32")
        z = disc(paddle.to_tensor(fake), paddle.to_tensor(seg), paddle.to_tensor(mask))
        loss = (paddle.nn.functional.binary_cross_entropy_with_logits(z, paddle.to_tensor(labels), reduction="none")
                * paddle.to_tensor(mask.astype("float32"))).sum() / float(mask.sum())
        loss.backward()
        opt.step()
        opt.clear_grad()
    after = fixed.score(disc, 32)
    assert after["fixed_gen_auc"] > 0.7 and after["fixed_gen_auc"] > before["fixed_gen_auc"] + 0.15


def _eval_records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, filter(str.strip, f)) if "eval_loss" in r]


FIXED_KEYS = [f"eval_fixed_{s}_{m}" for s in fixed_eval.SETS
              for m in ("auc", "accuracy", "precision", "recall", "loss", "replaced_share")]


def test_the_fixed_set_is_the_same_across_evaluations_a_resume_and_runs(data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    args = lambda out, *extra: (_args(data_dir, out, disc, gen, 30, 8, save=10)  # noqa: E731
                                + ["--eval-data-dir", data_dir, "--eval-steps", "10", "--eval-batches", "4",
                                   "--logging-steps", "10"] + list(extra))
    full = str(tmp_path / "full")
    r = _run(args(full))
    assert r.stdout.count("fixed held-out set:") == 1  # drawn once, at the first evaluation
    manifest = json.load(open(os.path.join(full, "fixed_eval", "manifest.json")))
    assert manifest["sets"]["gen"]["step"] == 10 and manifest["examples"] == 32
    evals = _eval_records(full)
    assert [e["step"] for e in evals] == [10, 20, 30]
    assert len({e["eval_fixed_set_id"] for e in evals}) == 1
    assert all(k in e for e in evals for k in FIXED_KEYS) and "eval_disc_auc" in evals[0]  # the live metrics stay
    # the discriminator learns the frozen generator's (early, easy) replacements: the fixed AUC rises
    assert evals[-1]["eval_fixed_gen_auc"] > max(0.65, evals[0]["eval_fixed_gen_auc"] + 0.1)

    # a resume from step 20 scores the same stored tokens, and gets the same numbers at step 30
    cut = str(tmp_path / "cut")
    shutil.copytree(full, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "checkpoint-00000030"))
    r = _run(args(cut))
    assert "resumed from" in r.stdout and "fixed held-out set:" not in r.stdout
    again = _eval_records(cut)
    assert [e["step"] for e in again] == [10, 20, 30]
    for k in FIXED_KEYS + ["eval_fixed_set_id"]:
        assert again[-1][k] == evals[-1][k], k

    # another run (another seed) scores the same tokens through --fixed-eval-dir; an untrained
    # discriminator (--eval-only of a fresh pair) scores about 0.5 on them
    init = str(tmp_path / "init")
    _pair(str(tmp_path), seed=7).save_pretrained(init)
    ev = str(tmp_path / "ev")
    _run(["--eval-only", "--data-dir", data_dir, "--eval-data-dir", data_dir, "--init-from", init, "--output-dir", ev,
          "--train-batch-size", "8", "--eval-batches", "2", "--fixed-eval-dir", os.path.join(full, "fixed_eval"),
          "--device", "cpu"])
    res = json.load(open(os.path.join(ev, "eval_results.json")))
    assert res["fixed_set_id"] == evals[0]["eval_fixed_set_id"] and not os.path.exists(os.path.join(ev, "fixed_eval"))
    assert abs(res["fixed_gen_auc"] - 0.5) < 0.1

    # a set drawn for other held-out data is refused at the start, naming both
    other = str(tmp_path / "other_fixed")
    shutil.copytree(os.path.join(full, "fixed_eval"), other)
    mf = os.path.join(other, "manifest.json")
    m = json.load(open(mf))
    m["eval_index_md5"] = "0" * 32
    json.dump(m, open(mf, "w"))
    bad = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")]
                         + args(str(tmp_path / "bad"), "--fixed-eval-dir", other),
                         env=_env(), capture_output=True, text=True)
    assert bad.returncode == 1 and "holds corruptions of the held-out set" in bad.stderr
    # a changed arrays file is refused too (md5)
    with open(os.path.join(other, "corruptions.safetensors"), "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"\x01")
    with pytest.raises(ValueError, match="changed or corrupt"):
        fixed_eval.FixedSet.load(other)

    # --no-fixed-eval: the live metrics only
    _run(args(str(tmp_path / "none"), "--max-steps", "10", "--no-fixed-eval"))
    e = _eval_records(str(tmp_path / "none"))[-1]
    assert "eval_disc_auc" in e and not any(k.startswith("eval_fixed_") for k in e)

    # the frozen-encoder probes of a checkpoint, into the run's metrics.jsonl (and plotted)
    from paddle_electra.cli import main
    sample = os.path.join(ROOT, "demo_data", "chnsenticorp")
    assert main(["probe", os.path.join(full, "checkpoints", "checkpoint-00000020"), "--train-file",
                 os.path.join(sample, "train.tsv"), "--dev-file", os.path.join(sample, "dev.tsv"),
                 "--n-train", "120", "--n-dev", "60", "--max-length", "32", "--num-threads", "1"]) == 0
    from paddle_electra.pretraining.metrics import read_metrics
    probes = read_metrics(os.path.join(full, "metrics.jsonl"))[2]
    assert len(probes) == 1 and probes[0]["step"] == 20
    assert {f"probe_{k}_layer{i}" for k in ("mean", "cls") for i in range(3)} <= set(probes[0])
    assert all(0 <= probes[0][f"probe_mean_layer{i}"] <= 100 for i in range(3))
    assert main(["probe", init, "--train-file", os.path.join(sample, "train.tsv"), "--dev-file",
                 os.path.join(sample, "dev.tsv"), "--n-train", "120", "--n-dev", "60", "--max-length", "32",
                 "--log-to", full, "--step", "0"]) == 0  # e.g. the random initialisation at step 0
    assert sorted(r["step"] for r in read_metrics(os.path.join(full, "metrics.jsonl"))[2]) == [0, 20]
    pytest.importorskip("matplotlib")
    from paddle_electra.pretraining.metrics import plot_curves
    png = plot_curves([os.path.join(full, "metrics.jsonl"), os.path.join(cut, "metrics.jsonl")],
                      str(tmp_path / "curves.png"), labels=["full", "resumed"])
    assert os.path.getsize(png) > 10000

"""The literature's pretraining options (issue 20 item 1), each a flag whose default is the original:
--warmup-ratio, --temperature-start/--temperature-anneal-steps (Fast-ELECTRA), --generator-lr-multiplier
(Dong et al., ICML 2023), --embedding-sharing gdes (DeBERTa-v3), and --mask-prob reaching the masking.
Each: changes what it says, the default is unchanged; recorded in run_info.json and the checkpoints;
a run with them resumes exactly. Tiny configs on CPU, one process."""
import argparse
import json
import os
import shutil
import subprocess

import numpy as np
import paddle
import pytest

from paddle_electra.config import ElectraConfig
from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraModel
from paddle_electra.pretraining import masking
from paddle_electra.pretraining.objective import RTDConfig, rtd_forward
from test_pretraining import TINY, _batch
from test_pretraining_trainer import PY, ROOT, _args, _env, _losses, _run, _tiny_configs, data_dir  # noqa: F401


def _parse(argv):
    from paddle_electra.pretraining.config import PretrainConfig, add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p)
    return PretrainConfig.from_args(p.parse_args(argv))


def _trainer(data_dir, out, disc, gen, *extra, steps=6, batch=2):  # noqa: F811
    from paddle_electra.pretraining.trainer import Trainer
    return Trainer(_parse(_args(data_dir, str(out), disc, gen, steps, batch) + ["--fast-cpu-kernels", "off"]
                          + list(extra)))


def _tiny_pair(sharing="original", seed=0):
    paddle.seed(seed)
    disc = ElectraConfig(**TINY)
    return ElectraForPreTraining(disc, disc.replace(hidden_size=8, num_attention_heads=1, intermediate_size=32),
                                 embedding_sharing=sharing)


# --- warmup as a ratio ------------------------------------------------------------------------------
def test_warmup_ratio_overrides_warmup_steps_and_the_default_is_the_original():
    from paddle_electra.pretraining.config import warmup_steps
    assert warmup_steps(_parse(["--data-dir", "d", "--output-dir", "o"])) == 10000  # the original's
    assert warmup_steps(_parse(["--data-dir", "d", "--output-dir", "o", "--warmup-steps", "300"])) == 300
    a = _parse(["--data-dir", "d", "--output-dir", "o", "--warmup-steps", "300", "--warmup-ratio", "0.1",
                "--max-steps", "1805"])
    assert warmup_steps(a) == 181  # ceil(180.5)
    with pytest.raises(ValueError, match="warmup-ratio"):
        warmup_steps(_parse(["--data-dir", "d", "--output-dir", "o", "--warmup-ratio", "1.5"]))


# --- sampling temperature schedule --------------------------------------------------------------------
def test_temperature_schedule_values():
    from paddle_electra.pretraining.config import temperature_schedule
    base = ["--data-dir", "d", "--output-dir", "o", "--max-steps", "8"]
    const = temperature_schedule(_parse(base))
    assert [const(k) for k in (0, 5, 100)] == [1.0, 1.0, 1.0]  # the original: a constant 1
    assert temperature_schedule(_parse(base + ["--temperature", "1.5"]))(7) == 1.5
    t = temperature_schedule(_parse(base + ["--temperature-start", "2", "--temperature-anneal-steps", "4"]))
    assert [t(k) for k in range(7)] == [2.0, 1.75, 1.5, 1.25, 1.0, 1.0, 1.0]
    t = temperature_schedule(_parse(base + ["--temperature-start", "3"]))  # anneal over --max-steps
    assert t(0) == 3.0 and t(4) == 2.0 and t(8) == 1.0
    with pytest.raises(ValueError, match="needs --temperature-start"):
        temperature_schedule(_parse(base + ["--temperature-anneal-steps", "4"]))
    with pytest.raises(ValueError, match="positive"):
        temperature_schedule(_parse(base + ["--temperature-start", "0"]))


def _record_temperatures(monkeypatch):
    from paddle_electra.pretraining import objective
    seen, orig = [], objective.sample_tokens

    def spy(logits, gumbel, temperature, disallow_ids=None):
        seen.append(temperature)
        return orig(logits, gumbel, temperature, disallow_ids)
    monkeypatch.setattr(objective, "sample_tokens", spy)
    return seen


def test_the_annealed_temperature_is_the_one_the_generator_samples_with(data_dir, tmp_path, monkeypatch):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    seen = _record_temperatures(monkeypatch)
    _trainer(data_dir, tmp_path / "anneal", disc, gen, "--temperature-start", "2", "--temperature-anneal-steps", "4",
             "--gradient-accumulation-steps", "2", "--save-steps", "100").train()
    want = [2.0, 1.75, 1.5, 1.25, 1.0, 1.0]
    assert seen == [t for t in want for _ in range(2)]  # each micro-step of step k samples at T(k)
    recs = [json.loads(l) for l in open(tmp_path / "anneal" / "metrics.jsonl")]
    assert [r["temperature"] for r in recs if "loss" in r] == want  # the record of step k + 1 holds T(k)
    seen.clear()
    _trainer(data_dir, tmp_path / "default", disc, gen, "--save-steps", "100", steps=3).train()
    assert seen == [1.0, 1.0, 1.0]


# --- generator learning-rate multiplier ----------------------------------------------------------------
def test_generator_lr_multiplier_scales_only_the_generators_updates(data_dir, tmp_path):  # noqa: F811
    """One step from the same weights on the same batch (warmup 0): the generator's own parameters move
    by 0.5 x the distance they move at multiplier 1, the discriminator's (and, with original sharing,
    the shared embeddings) exactly the same distance."""
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    moved = {}
    for mult in ("1", "0.5"):
        t = _trainer(data_dir, tmp_path / mult, disc, gen, "--warmup-steps", "0", "--generator-lr-multiplier", mult)
        before = {n: p.numpy().copy() for n, p in t.model.named_parameters()}
        t.train_step()
        moved[mult] = {n: p.numpy() - before[n] for n, p in t.model.named_parameters()}
        ratios = {t.optimizer._electra_names[k]: v for k, v in t.optimizer._electra_lr_ratios.items()}
        if mult == "1":
            assert ratios == {}  # the default: one rate, as the original
        else:
            assert set(ratios) == {n for n in moved[mult] if n.startswith("generator.")} and set(ratios.values()) == {0.5}
            assert not any(n.startswith("generator.electra.embeddings.") for n in ratios)  # shared: named discriminator.*
    gen_params = [n for n in moved["1"] if n.startswith("generator.") and np.abs(moved["1"][n]).max() > 1e-4]
    assert len(gen_params) > 10
    for n in moved["1"]:  # atol: a few float32 ulps of the parameters (the moves are differences of them)
        want = moved["1"][n] * (0.5 if n.startswith("generator.") else 1.0)
        np.testing.assert_allclose(moved["0.5"][n], want, rtol=1e-3, atol=3e-7, err_msg=n)


def test_generator_lr_multiplier_with_gdes_covers_the_generators_embeddings(data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    t = _trainer(data_dir, tmp_path / "g", disc, gen, "--generator-lr-multiplier", "0.25", "--embedding-sharing", "gdes")
    ratios = {t.optimizer._electra_names[k]: v for k, v in t.optimizer._electra_lr_ratios.items()}
    assert ratios["generator.electra.embeddings.word_embeddings.weight"] == 0.25
    assert "discriminator.electra.embeddings.word_embeddings_delta" not in ratios
    with pytest.raises(ValueError, match="positive"):
        _trainer(data_dir, tmp_path / "bad", disc, gen, "--generator-lr-multiplier", "0")


# --- gradient-disentangled embedding sharing ------------------------------------------------------------
def _grads(model, cfg):
    batch, m = _batch()
    g = paddle.to_tensor(masking.gumbel_noise(range(3), 4, 200, seed=0))
    loss, *_ = rtd_forward(model, batch, g, cfg)
    model.clear_gradients()
    loss.backward()
    return {n: (None if p.grad is None else p.grad.numpy().copy()) for n, p in model.named_parameters()}


def _norm(g):
    return 0.0 if g is None else float(np.abs(g).sum())


def test_gdes_starts_from_the_same_weights_and_outputs_as_original_sharing():
    a, b = _tiny_pair("original"), _tiny_pair("gdes")
    batch, _ = _batch()
    g = paddle.to_tensor(masking.gumbel_noise(range(3), 4, 200, seed=0))
    la, *_ = rtd_forward(a, batch, g, RTDConfig())
    lb, *_ = rtd_forward(b, batch, g, RTDConfig())
    assert float(la) == float(lb)
    sb = b.state_dict()
    for k, v in a.state_dict().items():
        if k in sb:
            np.testing.assert_array_equal(sb[k].numpy(), v.numpy(), err_msg=k)
    assert float(paddle.abs(b.discriminator.electra.embeddings.word_embeddings_delta).sum()) == 0


def test_gdes_the_disc_loss_does_not_reach_the_generators_embeddings():
    tables = [f"generator.electra.embeddings.{t}.weight" for t in ("word_embeddings", "position_embeddings")]
    deltas = [f"discriminator.electra.embeddings.{t}_delta" for t in ("word_embeddings", "position_embeddings")]
    # gdes, discriminator loss only: the generator's tables get nothing, the deltas do
    g = _grads(_tiny_pair("gdes"), RTDConfig(gen_weight=0.0, disc_weight=50.0))
    assert all(_norm(g[n]) == 0 for n in tables) and all(_norm(g[n]) > 0 for n in deltas)
    # gdes, MLM loss only: the reverse
    g = _grads(_tiny_pair("gdes"), RTDConfig(gen_weight=1.0, disc_weight=0.0))
    assert all(_norm(g[n]) > 0 for n in tables) and all(_norm(g[n]) == 0 for n in deltas)
    # both: the generator's tables get exactly the MLM loss's gradient
    both = _grads(_tiny_pair("gdes"), RTDConfig())
    mlm = _grads(_tiny_pair("gdes"), RTDConfig(gen_weight=1.0, disc_weight=0.0))
    for n in tables:
        np.testing.assert_allclose(both[n], mlm[n], rtol=1e-5, atol=1e-10)
    # the original (the default): the disc loss pulls the shared tables
    g = _grads(_tiny_pair("original"), RTDConfig(gen_weight=0.0, disc_weight=50.0))
    assert _norm(g["discriminator.electra.embeddings.word_embeddings.weight"]) > 0


def test_gdes_pair_saves_a_plain_discriminator_and_loads_back_exactly(tmp_path):
    m = _tiny_pair("gdes")
    rng = np.random.default_rng(1)
    emb = m.discriminator.electra.embeddings
    for t in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        d = getattr(emb, t + "_delta")
        d.set_value(paddle.to_tensor(rng.normal(0, 0.01, d.shape).astype("float32")))
    emb.LayerNorm.weight.set_value(paddle.full(emb.LayerNorm.weight.shape, 1.5))
    out = str(tmp_path / "pair")
    m.save_pretrained(out)
    assert "embedding_deltas.safetensors" in os.listdir(out)
    ids = paddle.to_tensor(rng.integers(0, 200, (2, 12)))
    m.eval()
    want = m.discriminator(ids).numpy()
    d = ElectraDiscriminator.from_pretrained(out)  # a plain ELECTRA discriminator: summed tables
    d.eval()
    np.testing.assert_array_equal(d(ids).numpy(), want)
    np.testing.assert_array_equal(d.electra.embeddings.word_embeddings.weight.numpy(),
                                  emb.table("word_embeddings").numpy())
    ElectraModel.from_pretrained(out)
    back = ElectraForPreTraining.from_pretrained(out)
    assert back.embedding_sharing == "gdes"
    for (k, a), (k2, b) in zip(sorted(m.state_dict().items()), sorted(back.state_dict().items())):
        assert k == k2
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    with pytest.raises(ValueError, match="gradient-disentangled"):
        ElectraForPreTraining.from_pretrained(out, embedding_sharing="original")
    # an original pair continued with gdes: zero deltas, the same outputs
    orig = _tiny_pair("original")
    orig.save_pretrained(str(tmp_path / "orig"))
    g = ElectraForPreTraining.from_pretrained(str(tmp_path / "orig"), embedding_sharing="gdes")
    orig.eval(), g.eval()
    np.testing.assert_array_equal(g.discriminator(ids).numpy(), orig.discriminator(ids).numpy())
    # files from different saves are refused
    from paddle_electra.io import load_tensors, save_tensors
    f = os.path.join(out, "embedding_deltas.safetensors")
    t = load_tensors(f)
    t["electra.embeddings.word_embeddings_delta"] = t["electra.embeddings.word_embeddings_delta"] + 1e-3
    save_tensors(t, f)
    with pytest.raises(ValueError, match="not the generator's table plus"):
        ElectraForPreTraining.from_pretrained(out)


# --- mask rate ----------------------------------------------------------------------------------------
def test_mask_prob_reaches_the_masking(data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.0)
    for prob, slots in ((0.15, 4), (0.25, 8)):  # int((p + 0.005) * 32)
        t = _trainer(data_dir, tmp_path / str(prob), disc, gen, "--mask-prob", str(prob), "--train-batch-size", "8")
        b, noise = t.host_batch(0)
        assert b["masked_lm_weights"].shape == (8, slots) and noise.shape[1] == slots
        n_real = b["attention_mask"].sum(1)
        want = np.maximum(1, np.minimum(slots, np.rint(n_real.astype(np.float32) * np.float32(prob))))
        np.testing.assert_array_equal(b["masked_lm_weights"].sum(1), want)


# --- end to end: recorded, resumed, exported ----------------------------------------------------------
def test_a_run_with_every_option_records_resumes_and_exports(data_dir, tmp_path):  # noqa: F811
    disc, gen = _tiny_configs(str(tmp_path), dropout=0.1)  # dropout on: its RNG state resumes too
    opts = ["--warmup-ratio", "0.5", "--temperature-start", "2", "--temperature-anneal-steps", "3",
            "--generator-lr-multiplier", "0.5", "--embedding-sharing", "gdes", "--mask-prob", "0.25"]
    full = str(tmp_path / "full")
    _run(_args(data_dir, full, disc, gen, 4, 4) + opts)
    recipe = json.load(open(os.path.join(full, "run_info.json")))["recipe"]
    assert recipe["warmup_steps"] == 2 and recipe["temperature_start"] == 2.0 and recipe["mask_prob"] == 0.25
    assert recipe["generator_lr_multiplier"] == 0.5 and recipe["embedding_sharing"] == "gdes"
    state = json.load(open(os.path.join(full, "checkpoints", "checkpoint-00000004", "trainer_state.json")))
    assert state["recipe"] == recipe
    recs = [json.loads(l) for l in open(os.path.join(full, "metrics.jsonl")) if l.strip()]
    train = [r for r in recs if "loss" in r]
    assert [r["temperature"] for r in train] == [2.0, 2 - 1 / 3, 2 - 2 / 3, 1.0]
    assert [r["lr"] for r in train] == pytest.approx([0.0, 1e-3 * 0.75 * 0.5, 1e-3 * 0.5, 1e-3 * 0.25])
    # resume from step 2: the same losses as the uninterrupted run
    cut = str(tmp_path / "cut")
    shutil.copytree(full, cut)
    shutil.rmtree(os.path.join(cut, "checkpoints", "checkpoint-00000004"))
    r = _run(_args(data_dir, cut, disc, gen, 4, 4) + opts)
    assert "resumed from" in r.stdout and "WARNING" not in r.stderr
    assert _losses(cut) == _losses(full)
    # another structure is refused (not skipped as a corrupt checkpoint); another temperature is named
    shutil.rmtree(os.path.join(cut, "checkpoints", "checkpoint-00000004"))
    bad = subprocess.run([PY, os.path.join(ROOT, "pretrain", "run_pretraining.py")] + _args(data_dir, cut, disc, gen, 4, 4)
                         + opts[:-4] + ["--mask-prob", "0.25"], env=_env(), capture_output=True, text=True)
    assert bad.returncode != 0 and "--embedding-sharing gdes" in bad.stderr and "not intact" not in bad.stderr
    r = _run(_args(data_dir, cut, disc, gen, 4, 4) + opts[:4] + ["--temperature-anneal-steps", "4"] + opts[6:])
    assert "temperature_anneal_steps 3 -> 4" in r.stderr
    # the export is a plain discriminator for fine-tuning, and a gdes pair for --init-from
    from paddle_electra.cli import main
    out = str(tmp_path / "export")
    assert main(["export", "pretraining", full, out]) == 0
    assert ElectraDiscriminator.from_pretrained(out).config.hidden_size == 64
    assert ElectraForPreTraining.from_pretrained(out).embedding_sharing == "gdes"

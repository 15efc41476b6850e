"""The original ELECTRA optimizer: AdamW without bias correction, weight decay exclusions, global-norm
clipping, the warmup x polynomial schedule and layerwise LR decay, against a numpy update."""
import numpy as np
import paddle
import pytest

from paddle_electra.config import ElectraConfig
from paddle_electra.modeling import ElectraDiscriminator
from paddle_electra.optimization import (create_optimizer, layerwise_lr_ratios,
                                         warmup_polynomial_decay, use_weight_decay)

TINY = ElectraConfig(vocab_size=50, embedding_size=8, hidden_size=12, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=16,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _model(seed=0):
    paddle.seed(seed)
    return ElectraDiscriminator(TINY)


def _loss(model, seed):
    rng = np.random.RandomState(seed)
    ids = paddle.to_tensor(rng.randint(0, 50, size=(3, 7)), dtype="int64")
    labels = paddle.to_tensor(rng.randint(0, 2, size=(3, 7)), dtype="float32")
    # large scale so that the global norm exceeds 1 and clipping matters
    return 30.0 * paddle.nn.functional.binary_cross_entropy_with_logits(model(ids), labels)


def _reference_step(params, grads, state, lr, ratios, wd=0.01, eps=1e-6, clip=1.0):
    norm = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    scale = clip / max(norm, clip)
    out = {}
    for n, p in params.items():
        g = grads[n] * scale
        m, v = state.setdefault(n, (np.zeros_like(p), np.zeros_like(p)))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        state[n] = (m, v)
        update = m / (np.sqrt(v) + eps)
        if use_weight_decay(n):
            update = update + wd * p
        out[n] = p - lr * ratios.get(n, 1.0) * update
    return out, norm


def _run(num_steps, warmup, layerwise=None, base_lr=0.05, wd=0.01, multiplier=None):
    model = _model()
    opt, sched = create_optimizer(model, base_lr, num_train_steps=10, warmup_steps=warmup,
                                  layerwise_lr_decay=layerwise, weight_decay=wd, lr_multiplier=multiplier)
    names = [n for n, _ in model.named_parameters()]
    ratios = layerwise_lr_ratios(names, TINY.num_hidden_layers, layerwise) if layerwise else {}
    if multiplier is not None:
        ratios = {n: ratios.get(n, 1.0) * multiplier(n) for n in names}
    params = {n: p.numpy().copy() for n, p in model.named_parameters()}
    state, norms = {}, []
    for t in range(num_steps):
        loss = _loss(model, t)
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
        lr = base_lr * (1 - t / 10) * (min(1.0, t / warmup) if warmup else 1.0)
        assert sched.get_lr() == pytest.approx(lr)
        before = params
        mine = {n: p.numpy().copy() for n, p in model.named_parameters()}
        params, norm = _reference_step(params, grads, state, lr, ratios, wd=wd)
        norms.append(norm)
        opt.step()
        opt.clear_grad()
        sched.step()
        # compare the updates (atol: a few float32 ulps of p). Paddle holds 1 - beta2 as float32 (0.99998713e-3, TF 1e-3),
        # a 1.3e-5 relative difference in v; bias correction would be a factor 0.3 at step 2
        for n, p in model.named_parameters():
            np.testing.assert_allclose(p.numpy() - mine[n], params[n] - before[n], rtol=1e-4, atol=2e-8,
                                       err_msg=f"{n} at step {t}")
    return norms


def test_one_step_matches_numpy_without_bias_correction():
    norms = _run(1, warmup=0)
    assert norms[0] > 1.0  # clipping was active


def test_two_steps_with_warmup_matches_numpy():
    # step 0 runs at lr 0 (t/W = 0, as the original) but still fills m and v
    _run(3, warmup=2)


def test_layerwise_decay_matches_numpy():
    _run(2, warmup=0, layerwise=0.8)


def test_lr_multiplier_per_parameter_matches_numpy():
    """A per-parameter lr multiplier (pretraining's --generator-lr-multiplier), alone and times the
    layerwise ratios: the update of each parameter is the original's at lr x multiplier."""
    slow = lambda name: 0.5 if "encoder.layer.1." in name or "discriminator_predictions" in name else 1.0  # noqa: E731
    _run(3, warmup=1, multiplier=slow)
    _run(2, warmup=0, layerwise=0.8, multiplier=slow)


def test_large_weight_decay_only_where_allowed():
    _run(2, warmup=0, wd=0.5)


def test_layerwise_ratios_original_and_corrected():
    names = ["electra.embeddings.word_embeddings.weight", "electra.embeddings_project.weight",
             "electra.encoder.layer.0.attention.self.query.weight",
             "electra.encoder.layer.11.output.dense.bias", "classifier.weight"]
    r = layerwise_lr_ratios(names, 12, 0.8)
    assert r[names[0]] == pytest.approx(0.8 ** 14) and r[names[1]] == pytest.approx(0.8 ** 14)
    assert r[names[2]] == pytest.approx(0.8 ** 13)
    assert r[names[3]] == pytest.approx(0.8 ** 2)   # the original's quirk: the top layer gets decay^2
    assert r[names[4]] == pytest.approx(1.0)
    c = layerwise_lr_ratios(names, 12, 0.8, corrected=True)
    assert c[names[3]] == pytest.approx(0.8) and c[names[4]] == 1.0 and c[names[0]] == pytest.approx(0.8 ** 13)
    with pytest.raises(ValueError, match="layer 11"):
        layerwise_lr_ratios(names, 4, 0.8)


def test_weight_decay_exclusions():
    assert use_weight_decay("electra.embeddings.word_embeddings.weight")
    assert not use_weight_decay("electra.embeddings.LayerNorm.weight")
    assert not use_weight_decay("electra.encoder.layer.0.output.dense.bias")
    assert not use_weight_decay("generator_predictions.output_bias")


def test_schedule_shape():
    s = warmup_polynomial_decay(1.0, num_train_steps=100, warmup_steps=10, power=1.0)
    lrs = []
    for _ in range(102):
        lrs.append(s.get_lr())
        s.step()
    assert lrs[0] == 0 and lrs[5] == pytest.approx(0.5 * 0.95) and lrs[10] == pytest.approx(0.9)
    assert lrs[100] == 0 and lrs[101] == 0


def test_state_survives_save_and_load(tmp_path):
    model = _model()
    opt, sched = create_optimizer(model, 0.05, 10, 0)
    for t in range(2):
        _loss(model, t).backward()
        opt.step(), opt.clear_grad(), sched.step()
    paddle.save(opt.named_state_dict(), str(tmp_path / "opt.pdopt"))
    params = {n: p.numpy().copy() for n, p in model.named_parameters()}
    _loss(model, 2).backward()
    opt.step()
    want = {n: p.numpy().copy() for n, p in model.named_parameters()}

    model2 = _model(seed=1)
    for n, p in model2.named_parameters():
        p.set_value(params[n])
    opt2, sched2 = create_optimizer(model2, 0.05, 10, 0)
    state = paddle.load(str(tmp_path / "opt.pdopt"))
    assert "electra.embeddings.word_embeddings.weight_moment1_0" in state
    opt2.set_named_state_dict(state)
    assert sched2.last_epoch == 2
    _loss(model2, 2).backward()
    opt2.step()
    for n, p in model2.named_parameters():
        np.testing.assert_allclose(p.numpy(), want[n], rtol=1e-6, atol=1e-8, err_msg=n)

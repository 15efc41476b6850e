"""The model's structure and numerics rules (docs/design.md) that hold without a reference stack."""
import json

import numpy as np
import paddle
import pytest

from paddle_electra.config import VARIANTS, ConfigError, ElectraConfig, get_variant
from paddle_electra.conversion.common import expected_shapes
from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator, ElectraModel

TINY = ElectraConfig(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=40)
TINY_GEN = TINY.replace(hidden_size=8, num_attention_heads=1, intermediate_size=32)


@pytest.mark.parametrize("size,weights,params", [("small", 402, 12.3e6), ("small-ex", 784, 24.5e6),
                                                 ("base", 400, 101.7e6), ("large", 784, 324.5e6)])
def test_released_shapes(size, weights, params):
    """Weight count of a released checkpoint (generator + discriminator, shared embeddings once) and
    discriminator size, as docs/design.md tabulates them."""
    v = get_variant(f"chinese-electra-{size}")
    disc = expected_shapes(ElectraDiscriminator, v.discriminator)
    gen = expected_shapes(ElectraGenerator, v.generator)
    shared = [k for k in gen if k.startswith("electra.embeddings.")]
    assert len(disc) + len(gen) - len(shared) == weights
    backbone = sum(int(np.prod(s)) for k, s in disc.items() if k.startswith("electra."))
    assert backbone == v.discriminator.num_parameters()
    assert round(backbone / 1e5) == round(params / 1e5)
    assert ("electra.embeddings_project.weight" in disc) == (v.discriminator.embedding_size != v.discriminator.hidden_size)
    assert gen["electra.embeddings_project.weight"] == (v.discriminator.embedding_size, v.generator.hidden_size)


def test_registry_generators_follow_the_rule():
    for v in VARIANTS.values():
        G = v.generator.hidden_size
        assert G == v.discriminator.hidden_size // 4
        assert v.generator.num_attention_heads == max(1, G // 64)
        assert v.generator.intermediate_size == 4 * G
        assert v.generator.num_hidden_layers == v.discriminator.num_hidden_layers
        assert v.generator.embedding_size == v.discriminator.embedding_size
    assert get_variant("hfl/chinese-electra-180g-base-discriminator").name == "chinese-electra-180g-base"
    assert "chinese-legal-electra-small-ex" not in VARIANTS
    with pytest.raises(KeyError, match="unknown variant"):
        get_variant("chinese-electra-huge")


def test_hfl_config_files_round_trip(tmp_path):
    # the published config/small_generator_config.json, field for field
    published = {"attention_probs_dropout_prob": 0.1, "directionality": "bidi", "embedding_size": 128,
                 "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 64, "initializer_range": 0.02,
                 "intermediate_size": 256, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
                 "model_type": "electra", "num_attention_heads": 1, "num_hidden_layers": 12, "pad_token_id": 0,
                 "summary_activation": "gelu", "summary_last_dropout": 0.1, "summary_type": "first",
                 "summary_use_proj": True, "type_vocab_size": 2, "vocab_size": 21128}
    path = tmp_path / "small_generator_config.json"
    path.write_text(json.dumps(published))
    cfg = ElectraConfig.from_json_file(str(path))
    assert cfg == VARIANTS["chinese-electra-small"].generator
    cfg.to_json_file(str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text()) == published


def test_config_without_embedding_size_is_rejected_or_inferred(tmp_path):
    d = VARIANTS["chinese-electra-small"].discriminator.to_dict()
    del d["embedding_size"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="embedding_size"):
        ElectraConfig.from_json_file(str(path))
    assert ElectraConfig.from_json_file(str(path), embedding_size=128).embedding_size == 128
    with pytest.raises(ConfigError, match="num_attention_heads"):
        ElectraConfig(hidden_size=30, num_attention_heads=4)
    path.write_text(json.dumps({**d, "embedding_size": 128, "hidden_size": "256"}))
    with pytest.raises(ConfigError, match="hidden_size"):
        ElectraConfig.from_json_file(str(path))


@pytest.mark.parametrize("field,value,message", [
    ("hidden_size", -256, "hidden_size must be an integer in \\[1, 65536\\], got -256"),
    ("hidden_size", 0, "hidden_size must be an integer in \\[1, 65536\\], got 0"),
    ("vocab_size", 0, "vocab_size must be an integer in \\[1, 10000000\\], got 0"),
    ("num_hidden_layers", 100000, "num_hidden_layers must be an integer in \\[1, 1000\\], got 100000"),
    ("num_attention_heads", 0, "num_attention_heads must be an integer"),
    ("max_position_embeddings", -1, "max_position_embeddings"),
    ("hidden_dropout_prob", 1.5, "hidden_dropout_prob must be a probability"),
    ("layer_norm_eps", 0.0, "layer_norm_eps must be in"),
    ("pad_token_id", 21128, "pad_token_id 21128 is not an id"),
])
def test_config_values_out_of_range_name_the_field(tmp_path, field, value, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**VARIANTS["chinese-electra-small"].discriminator.to_dict(), field: value}))
    with pytest.raises(ConfigError, match=f"{path}: {message}"):
        ElectraConfig.from_json_file(str(path))


def test_config_with_absurd_parameter_count_is_refused():
    with pytest.raises(ConfigError, match="B backbone parameters .* refused"):
        ElectraConfig(hidden_size=16384, num_attention_heads=16, intermediate_size=65536, num_hidden_layers=1000)


def _batch(seed=0, B=3, S=11, pad=(0, 4, 7)):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, TINY.vocab_size, size=(B, S))
    mask = np.ones((B, S), dtype="int64")
    for b, p in enumerate(pad):
        if p:
            mask[b, S - p:] = 0
            ids[b, S - p:] = 0
    tt = np.zeros((B, S), dtype="int64")
    tt[:, S // 2:] = 1
    return paddle.to_tensor(ids, dtype="int64"), paddle.to_tensor(tt), paddle.to_tensor(mask)


def test_forward_shapes_and_padding_invariance():
    paddle.seed(1)
    model = ElectraModel(TINY)
    model.eval()
    ids, tt, mask = _batch()
    out, states = model(ids, tt, mask, output_hidden_states=True)
    assert out.shape == [3, 11, 32] and len(states) == 3
    np.testing.assert_array_equal(states[-1].numpy(), out.numpy())
    # real tokens do not see padding: row 1 without its 4 padding positions gives the same states
    short = model(ids[1:2, :7], tt[1:2, :7], mask[1:2, :7])
    np.testing.assert_allclose(short.numpy()[0], out.numpy()[1, :7], atol=1e-5)


def test_pretraining_shares_the_whole_embeddings_block():
    model = ElectraForPreTraining(TINY, TINY_GEN)
    assert model.generator.electra.embeddings is model.discriminator.electra.embeddings
    params = model.parameters()
    assert len({id(p) for p in params}) == len(params)  # Paddle counts shared parameters once
    ids, tt, mask = _batch()
    gen_logits, disc_logits = model(ids, tt, mask)
    assert gen_logits.shape == [3, 11, TINY.vocab_size] and disc_logits.shape == [3, 11]
    # a gradient through the generator reaches the shared word embeddings
    gen_logits.sum().backward()
    assert model.discriminator.electra.embeddings.word_embeddings.weight.grad is not None


def test_generator_on_masked_positions_equals_full_logits():
    paddle.seed(2)
    gen = ElectraGenerator(TINY_GEN)
    gen.eval()
    ids, tt, mask = _batch()
    full = gen(ids, tt, mask).numpy()
    pos = np.array([[0, 3, 3], [1, 2, 6], [10, 0, 5]], dtype="int64")
    part = gen(ids, tt, mask, masked_positions=paddle.to_tensor(pos)).numpy()
    np.testing.assert_allclose(part, np.take_along_axis(full, pos[:, :, None], axis=1), atol=1e-5)


def test_numerics_match_a_numpy_transcription_of_the_original():
    """One layer of the backbone recomputed in numpy with the original's rules: erf GELU, LayerNorm
    epsilon 1e-12, additive -10000 key mask, post-LN, embeddings_project after the embedding LayerNorm."""
    from math import erf
    paddle.seed(3)
    cfg = TINY.replace(num_hidden_layers=1)
    model = ElectraModel(cfg)
    model.eval()
    ids, tt, mask = _batch()
    got = model(ids, tt, mask).numpy()
    W = {k: v.numpy().astype("float64") for k, v in model.state_dict().items()}

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * W[p + ".weight"] + W[p + ".bias"]

    def dense(x, p):
        return x @ W[p + ".weight"] + W[p + ".bias"]

    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))
    i, t, m = ids.numpy(), tt.numpy(), mask.numpy()
    x = W["embeddings.word_embeddings.weight"][i] + W["embeddings.position_embeddings.weight"][np.arange(11)] \
        + W["embeddings.token_type_embeddings.weight"][t]
    x = dense(ln(x, "embeddings.LayerNorm"), "embeddings_project")
    p = "encoder.layer.0."
    B, S, H, nh = 3, 11, 32, 4

    def heads(y):
        return y.reshape(B, S, nh, H // nh).transpose(0, 2, 1, 3)
    q, k, v = (heads(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(H // nh) + (1.0 - m[:, None, None, :]) * -10000.0
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
    attn = ln(dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
    out = ln(dense(gelu(dense(attn, p + "intermediate.dense")), p + "output.dense") + attn, p + "output.LayerNorm")
    np.testing.assert_allclose(got, out, atol=2e-5)


# --- execution modes (flags read inside the forwards) ------------------------------------------------
def _train_step(model, ids, tt, mask):
    out = model(ids, tt, mask)
    (out * paddle.arange(out.shape[-1], dtype=out.dtype)).sum().backward()  # a gradient that differs per position
    grads = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
    return out.numpy(), grads


def _count_calls(monkeypatch):
    from paddle_electra import cpu_kernels, fast_cpu, modeling
    calls = {"linear": 0, "attention": 0, "gelu": 0, "layer_norm": 0}
    # the fast path of each: fast_cpu's linear, the registered "fast_cpu" attention, the compiled kernels
    where = {"linear": (fast_cpu, "linear"), "attention": (modeling.ATTENTION_FUNCTIONS, "fast_cpu"),
             "gelu": (cpu_kernels, "gelu"), "layer_norm": (cpu_kernels, "layer_norm")}
    for name, (holder, key) in where.items():
        registry = isinstance(holder, dict)
        real = holder[key] if registry else getattr(holder, key)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        (monkeypatch.setitem if registry else monkeypatch.setattr)(holder, key, counted)
    return calls


NO_CALLS = {"linear": 0, "attention": 0, "gelu": 0, "layer_norm": 0}


def test_fast_cpu_kernels_match_the_plain_forward_and_gradients(monkeypatch):
    """The PyLayer path (GEMV bias gradients, transpose-free attention) and the compiled GELU and
    LayerNorm (where they build) against modeling.py's plain code, same weights, dropout off: forward
    within 1e-5, every gradient within rtol 1e-4."""
    from paddle_electra import cpu_kernels
    from paddle_electra.modeling import set_execution_modes
    calls = _count_calls(monkeypatch)
    cfg = TINY.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids, tt, mask = _batch()
    results = []
    for fast in (False, True):
        paddle.seed(5)
        model = set_execution_modes(ElectraDiscriminator(cfg), fast_cpu_kernels=fast)
        results.append(_train_step(model, ids, tt, mask))
        if not fast:
            assert calls == NO_CALLS
    # 2 layers: attention once each (its q/k/v per head inside), the other Linears through fast_cpu.linear
    assert calls["attention"] == 2 and calls["linear"] > 2 * 4 * 3
    # GELU: each layer's intermediate and the discriminator head; LayerNorm: embeddings and 2 per layer
    compiled = cpu_kernels.available()
    assert (calls["gelu"], calls["layer_norm"]) == ((3, 5) if compiled else (0, 0))
    (plain_out, plain_grads), (fast_out, fast_grads) = results
    np.testing.assert_allclose(fast_out, plain_out, rtol=1e-5, atol=1e-5)
    assert fast_grads.keys() == plain_grads.keys()
    for n, g in plain_grads.items():
        if n.endswith("key.bias"):  # its true gradient is 0 (softmax ignores a per-row constant): rounding only
            assert np.abs(fast_grads[n]).max() < 1e-5
            continue
        np.testing.assert_allclose(fast_grads[n], g, rtol=1e-4, atol=1e-6 * np.abs(g).max(), err_msg=n)


def test_execution_modes_act_only_in_dygraph_training(monkeypatch):
    from paddle_electra.modeling import set_execution_modes
    calls = _count_calls(monkeypatch)
    model = set_execution_modes(ElectraDiscriminator(TINY), fast_cpu_kernels=True, recompute=True)
    model.eval()
    ids, tt, mask = _batch()
    with paddle.no_grad():
        model(ids, tt, mask)
    assert calls == NO_CALLS
    set_execution_modes(model, fast_cpu_kernels=False)  # None leaves recompute as it was
    assert model.electra.encoder.recompute and not model.electra.encoder.layer[0].attention.self.fast_cpu_kernels


def test_recompute_gives_the_same_outputs_and_gradients():
    """Recomputed encoder layers (dropout on: the recompute replays the RNG state) = the plain backward."""
    from paddle_electra.modeling import set_execution_modes
    ids, tt, mask = _batch()
    results = []
    for recompute in (False, True):
        paddle.seed(7)
        model = set_execution_modes(ElectraDiscriminator(TINY), recompute=recompute)
        paddle.seed(8)  # the same dropout masks in both runs
        results.append(_train_step(model, ids, tt, mask))
    (plain_out, plain_grads), (rec_out, rec_grads) = results
    np.testing.assert_allclose(rec_out, plain_out, rtol=1e-6, atol=1e-6)
    for n, g in plain_grads.items():
        np.testing.assert_allclose(rec_grads[n], g, rtol=1e-5, atol=1e-7 * np.abs(g).max(), err_msg=n)


def test_export_after_fast_training_needs_no_undo(tmp_path):
    """Train a step with both modes on, then export with the flags still set: the static graph traces
    the plain code (in training mode too) and gives the dygraph model's eval outputs."""
    from paddle_electra.modeling import set_execution_modes
    from paddle_electra.inference import export
    cfg = TINY.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    paddle.seed(9)
    model = set_execution_modes(ElectraDiscriminator(cfg), fast_cpu_kernels=True, recompute=True)
    ids, tt, mask = _batch()
    opt = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    model(ids, tt, mask).sum().backward()
    opt.step()
    assert not any("forward" in layer.__dict__ for layer in model.sublayers(include_self=True))
    model.eval()
    want = model(ids, tt, mask).numpy()
    model.train()
    export(model, str(tmp_path / "exported"))
    loaded = paddle.jit.load(str(tmp_path / "exported" / "model"))
    np.testing.assert_allclose(loaded(ids, tt, mask).numpy(), want, rtol=1e-5, atol=1e-5)
    # to_static in training mode with the flags set: paddle.in_dynamic_mode() is False while tracing
    static = paddle.jit.to_static(model, full_graph=True)
    np.testing.assert_allclose(static(ids, tt, mask).numpy(), want, rtol=1e-5, atol=1e-5)
    assert model.training

"""The compiled CPU kernels (paddle_electra/cpu_kernels.py, csrc/cpu_kernels.cc) against Paddle's own
kernels, their build cache and their fallback. The build runs once per test run (the module fixture:
two processes building at once into an empty cache); the model-level checks (the fast_cpu path gives
the plain path's loss and gradients) are in tests/test_modeling.py and tests/test_pretraining.py."""
import functools
import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_electra import cpu_kernels, paddle_compat
from paddle_electra.io import file_digest
from cpus import another_cpu
from paddle_electra.cpu import CpuInfo, cpu_info

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# float32 results of two implementations of the same formula (libmvec erf/exp within 4 ulp, other
# summation orders): a few ulp of the value, relative to the tensor's largest entry for sums
RTOL, ATOL = 2e-5, 1e-6


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    why = cpu_kernels._unavailable(cpu_info())
    if why:
        pytest.skip(f"compiled kernels cannot be built here: {why}")
    cache = str(tmp_path_factory.mktemp("kernel_cache"))
    env = dict(os.environ, PADDLE_ELECTRA_KERNEL_CACHE=cache, PYTHONPATH=ROOT)
    code = ("import logging; logging.basicConfig(level=logging.INFO, format='%(message)s'); "
            "from paddle_electra import cpu_kernels; assert cpu_kernels.available()")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), logs
    said = [line for log in logs for line in log.splitlines() if line.startswith("compiled CPU kernels: ")]
    # started together: one built, the other waited on the lock and loaded that build
    assert sorted(s.split()[3] for s in said) == ["built", "loaded"], logs
    assert len(os.listdir(cache)) == 2  # the build and the lock file: no temporary folder left
    if not cpu_kernels.available.cache_info().currsize:  # not loaded in this process yet: take that build
        os.environ["PADDLE_ELECTRA_KERNEL_CACHE"], saved = cache, os.environ.get("PADDLE_ELECTRA_KERNEL_CACHE")
        try:
            assert cpu_kernels.available()
        finally:
            os.environ["PADDLE_ELECTRA_KERNEL_CACHE"] = saved
    assert cpu_kernels.available()
    return cache


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def threads(request, monkeypatch):
    monkeypatch.setattr(paddle_compat, "_math_threads", request.param)
    return request.param


def _dy(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _grads(fn, inputs, seed):
    out = fn(*inputs)
    return out.numpy(), [g.numpy() for g in paddle.grad(out, inputs, paddle.to_tensor(_dy(out.shape, seed)))]


def _close(got, want, what, atol=0.0):
    atol = max(atol, ATOL * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=what)


# rows not a multiple of 8, widths 1 ... 1024; the last two are over the size split between threads
SHAPES = [(13, 1), (9, 7), (31, 64), (5, 3, 256), (67, 1024), (131, 256)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gelu_matches_paddle(kernels, threads, shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype("float32") * 3
    flat = x.reshape(-1)  # a view: large |x| (the tails of erf and exp) among the normal values
    flat[:min(8, flat.size)] = [-1e4, -30, -9, -5.5, 5.5, 9, 30, 1e4][:flat.size]
    xt = paddle.to_tensor(x, stop_gradient=False)
    want, (want_dx,) = _grads(lambda v: F.gelu(v, approximate=False), [xt], 1)
    got, (got_dx,) = _grads(cpu_kernels.gelu, [xt], 1)
    _close(got, want, "gelu")
    _close(got_dx, want_dx, "gelu dx")


def test_gelu_saturates_for_large_inputs(kernels):
    x = paddle.to_tensor(np.array([-1e4, -100, -20, 20, 100, 1e4], "float32"), stop_gradient=False)
    out = cpu_kernels.gelu(x)
    np.testing.assert_array_equal(out.numpy(), [0, 0, 0, 20, 100, 1e4])
    np.testing.assert_array_equal(paddle.grad(out, [x])[0].numpy(), [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layer_norm_matches_paddle(kernels, threads, shape, eps):
    rng = np.random.default_rng(sum(shape))
    width = shape[-1]
    x = paddle.to_tensor((rng.standard_normal(shape) * 2 + 0.5).astype("float32"), stop_gradient=False)
    w = paddle.to_tensor((rng.random(width) + 0.5).astype("float32"), stop_gradient=False)
    b = paddle.to_tensor(rng.standard_normal(width).astype("float32"), stop_gradient=False)
    if width == 1 and eps == 1e-12:  # var = 0: the gradient of x is 0 up to rounding times 1/sqrt(eps)
        eps = 1e-5
    want, want_g = _grads(lambda *a: F.layer_norm(a[0], [width], a[1], a[2], eps), [x, w, b], 2)
    got, got_g = _grads(lambda *a: cpu_kernels.layer_norm(*a, eps), [x, w, b], 2)
    _close(got, want, "layer_norm")
    # dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy w: the difference of terms of size rstd |g|
    # cancels to a few ulp of that (FMA or not), whatever dx's own size
    var = x.numpy().var(axis=-1).min()  # the largest rstd
    cancel = 4 * 2.0 ** -23 * np.abs(_dy(shape, 2) * w.numpy()).max() / np.sqrt(var + eps)
    for name, g, h in zip(("dx", "dweight", "dbias"), got_g, want_g):
        _close(g, h, f"layer_norm {name}", atol=cancel if name == "dx" else 0.0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 5, 7), (3, 128, 128), (2, 9, 300)], ids=str)
def test_masked_softmax_matches_paddle(kernels, threads, shape):
    """softmax(scores * scale + mask) with the mask [batch, C] over every row of its matrix, as attention
    computes it with the mask [batch, 1, C] broadcast: probabilities and the scores' gradient."""
    B, R, C = shape
    rng = np.random.default_rng(C)
    scores = paddle.to_tensor(rng.standard_normal(shape).astype("float32") * 8, stop_gradient=False)
    keep = rng.random((B, C)) < 0.7
    keep[:, 0] = True  # every row has a real token
    mask = paddle.to_tensor(np.where(keep, 0.0, -10000.0).astype("float32"))
    scale = 0.125
    want, (want_dx,) = _grads(lambda s: F.softmax(s * scale + mask.unsqueeze(1), axis=-1), [scores], 2)
    got, (got_dx,) = _grads(lambda s: cpu_kernels.masked_softmax(s, mask, scale), [scores], 2)
    _close(got, want, "masked softmax")
    _close(got_dx, want_dx, "masked softmax dx")
    assert np.all(got[np.broadcast_to(~keep[:, None, :], shape)] == 0)


def test_masked_softmax_names_a_mask_of_the_wrong_size(kernels):
    with pytest.raises(Exception, match=r"mask must have 6 elements"):
        cpu_kernels.masked_softmax(paddle.zeros([2, 4, 3]), paddle.zeros([2, 4]), 1.0)


def test_layer_norm_is_deterministic_for_a_thread_count(kernels, threads):
    rng = np.random.default_rng(3)
    x = paddle.to_tensor(rng.standard_normal((300, 256)).astype("float32"), stop_gradient=False)
    w = paddle.to_tensor(np.ones(256, "float32"), stop_gradient=False)
    b = paddle.to_tensor(np.zeros(256, "float32"), stop_gradient=False)
    runs = [_grads(lambda *a: cpu_kernels.layer_norm(*a, 1e-12), [x, w, b], 4) for _ in range(2)]
    for a, c in zip([runs[0][0], *runs[0][1]], [runs[1][0], *runs[1][1]]):
        np.testing.assert_array_equal(a, c)


# --- the build cache ------------------------------------------------------------------------------
def _key(info=None, source=None):
    with open(cpu_kernels.SOURCE, "rb") as f:
        return cpu_kernels.build_key(f.read() if source is None else source, info or cpu_info())


def test_a_build_for_another_cpu_or_source_is_not_loaded(kernels, monkeypatch):
    monkeypatch.setenv("PADDLE_ELECTRA_KERNEL_CACHE", kernels)
    mine = _key()
    folder = cpu_kernels.build_folder(mine)
    assert cpu_kernels.cached_library(folder, mine) == os.path.join(folder, "electra_cpu_kernels.so")
    other_cpu = another_cpu(cpu_info())  # a fixed cpuinfo text of another family (tests/cpus.py)
    for other in (_key(info=other_cpu), _key(source=b"// changed\n" + open(cpu_kernels.SOURCE, "rb").read())):
        assert cpu_kernels.build_folder(other) != folder
        assert cpu_kernels.cached_library(folder, other) is None
        # even when this CPU's build sits in the other key's folder, its build.json refuses it
        shutil.copytree(folder, cpu_kernels.build_folder(other))
        assert cpu_kernels.cached_library(cpu_kernels.build_folder(other), other) is None
    built = []
    monkeypatch.setattr(cpu_kernels, "_build", lambda folder, key: built.append((folder, key)))
    with pytest.raises(RuntimeError, match="left no library"):
        cpu_kernels._load(other_cpu)  # goes to build (stubbed here) instead of loading the folder's library
    assert built == [(cpu_kernels.build_folder(_key(info=other_cpu)), _key(info=other_cpu))]
    meta = json.load(open(os.path.join(folder, cpu_kernels.BUILD_META)))
    assert meta.pop(cpu_kernels.LIBRARY_SHA) == file_digest(os.path.join(folder, "electra_cpu_kernels.so"))
    assert meta == mine


# a fixed CPU (tests never depend on this machine's): the cache tests below stub the compiler
FAKE_CPU = CpuInfo(vendor="AuthenticAMD", model="AMD EPYC 9R14 96-Core Processor", flags=frozenset({"avx2", "fma"}))


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch):
    """A cache in tmp_path whose builds are stubbed: _compile writes a library of known bytes (counting
    the builds), register_custom_ops records what would be loaded."""
    monkeypatch.setenv(cpu_kernels.CACHE_ENV, str(tmp_path / "cache"))
    builds, loaded = [], []

    def compile_(build_directory):
        out = os.path.join(build_directory, cpu_kernels.NAME)
        os.makedirs(os.path.join(out, "build"))
        with open(os.path.join(out, cpu_kernels.NAME + ".so"), "wb") as f:
            f.write(b"\x7fELF good library %d" % len(builds))
        builds.append(build_directory)
        return out
    monkeypatch.setattr(cpu_kernels, "_compile", compile_)
    monkeypatch.setattr(paddle_compat, "register_custom_ops", lambda library: loaded.append(open(library, "rb").read()))
    return builds, loaded


@pytest.mark.parametrize("damage", ["overwritten", "random", "truncated", "missing"])
def test_a_damaged_library_in_the_cache_is_rebuilt_not_loaded(fake_compiler, caplog, damage):
    builds, loaded = fake_compiler
    assert cpu_kernels._load(FAKE_CPU).startswith("built ")
    folder = cpu_kernels.build_folder(_key(info=FAKE_CPU))
    library = os.path.join(folder, cpu_kernels.NAME + ".so")
    assert cpu_kernels._load(FAKE_CPU) == f"loaded {library}" and loaded == [b"\x7fELF good library 0"]
    # the lock lives beside the build folder (which a rebuild replaces), not inside it; no temporaries left
    assert sorted(os.listdir(os.path.dirname(folder))) == sorted([os.path.basename(folder),
                                                                  f".{os.path.basename(folder)}.lock"])
    assert sorted(os.listdir(folder)) == [cpu_kernels.BUILD_META, cpu_kernels.NAME + ".so"]
    if damage == "overwritten":  # bytes overwritten in place (what gave SIGILL / SIGBUS in dlopen)
        with open(library, "r+b") as f:
            f.seek(4)
            f.write(b"\xff\xff")
    elif damage == "random":
        with open(library, "wb") as f:
            f.write(os.urandom(64))
    elif damage == "truncated":
        os.truncate(library, 3)
    else:
        os.remove(library)
    loaded.clear()
    with caplog.at_level(logging.WARNING, logger="paddle_electra.cpu_kernels"):
        assert cpu_kernels._load(FAKE_CPU) == f"built {library}"  # rebuilt, the damaged bytes never loaded
        assert cpu_kernels._load(FAKE_CPU) == f"loaded {library}"  # and the rebuild is used from then on
    assert loaded == [b"\x7fELF good library 1"] and len(builds) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "paddle_electra.cpu_kernels"]
    assert len(warnings) == 1 and library in warnings[0] and "damaged" in warnings[0], warnings
    assert sorted(os.listdir(folder)) == [cpu_kernels.BUILD_META, cpu_kernels.NAME + ".so"]
    assert len(os.listdir(os.path.dirname(folder))) == 2


def test_a_failed_rebuild_keeps_the_previous_folder_and_leaves_no_temporary(fake_compiler, monkeypatch):
    cpu_kernels._load(FAKE_CPU)
    folder = cpu_kernels.build_folder(_key(info=FAKE_CPU))
    with open(os.path.join(folder, cpu_kernels.NAME + ".so"), "ab") as f:
        f.write(b"junk")
    before = sorted(os.listdir(os.path.dirname(folder)))

    def fails(build_directory):
        raise RuntimeError("c++: internal compiler error")
    monkeypatch.setattr(cpu_kernels, "_compile", fails)
    with pytest.raises(RuntimeError, match="internal compiler error"):
        cpu_kernels._load(FAKE_CPU)
    assert sorted(os.listdir(os.path.dirname(folder))) == before  # replaced only by a complete build


# --- the fallback --------------------------------------------------------------------------------
def _tiny_train_step():
    from paddle_electra.config import ElectraConfig
    from paddle_electra.modeling import ElectraDiscriminator, set_execution_modes
    cfg = ElectraConfig(vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    model = set_execution_modes(ElectraDiscriminator(cfg), fast_cpu_kernels=True)
    model.train()
    ids = paddle.to_tensor(np.arange(24).reshape(2, 12) % 50)
    loss = model(ids).square().mean()
    loss.backward()
    return float(loss)


@pytest.mark.parametrize("cause", ["build", "opt-out"])
def test_without_the_kernels_training_runs_on_paddles(monkeypatch, caplog, cause):
    monkeypatch.setattr(cpu_kernels, "available", functools.lru_cache()(cpu_kernels.available.__wrapped__))
    if cause == "build":
        monkeypatch.delenv(cpu_kernels.OPT_OUT_ENV, raising=False)
        monkeypatch.setattr(cpu_kernels, "_unavailable", lambda info: None)

        def broken(info):
            raise RuntimeError("c++: fatal error: no input files")
        monkeypatch.setattr(cpu_kernels, "_load", broken)
    else:
        monkeypatch.setenv(cpu_kernels.OPT_OUT_ENV, "0")
    calls = []
    for name in ("gelu", "layer_norm", "dropout"):
        monkeypatch.setattr(cpu_kernels, name, lambda *a, _n=name: calls.append(_n))
    with caplog.at_level(logging.WARNING, logger="paddle_electra.cpu_kernels"):
        assert np.isfinite(_tiny_train_step())
        _tiny_train_step()
    warnings = [r.getMessage() for r in caplog.records if r.name == "paddle_electra.cpu_kernels"]
    assert len(warnings) == 1, warnings  # once per process
    assert ("no input files" if cause == "build" else "PADDLE_ELECTRA_CPU_KERNELS=0") in warnings[0]
    assert calls == []


# --- dropout ------------------------------------------------------------------------------------------
def _dropout(x, p, seed):
    paddle.seed(seed)
    xt = paddle.to_tensor(x, stop_gradient=False)
    out = cpu_kernels.dropout(xt, p)
    dy = _dy(x.shape, 5)
    return out.numpy(), paddle.grad(out, [xt], paddle.to_tensor(dy))[0].numpy(), dy


@pytest.mark.parametrize("shape", [(13,), (3, 7), (67, 1031)], ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask_scale_and_gradient(kernels, threads, shape, p):
    x = np.random.default_rng(0).uniform(0.5, 2, shape).astype("float32")  # never 0: kept = out != 0
    out, dx, dy = _dropout(x, p, seed=11)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)  # upscale_in_train
    np.testing.assert_allclose(dx, np.where(kept, dy / (1 - p), 0), rtol=1e-6)  # the forward's mask
    again, _, _ = _dropout(x, p, seed=11)
    np.testing.assert_array_equal(again, out)  # paddle.seed repeats the mask
    if x.size > 1000:
        other, _, _ = _dropout(x, p, seed=12)
        assert ((other != 0) != kept).mean() > p * (1 - p)  # another seed, another mask (2p(1-p) expected)


def test_dropout_mask_does_not_depend_on_threads(kernels, monkeypatch):
    x = np.ones((300, 257), "float32")
    masks = []
    for n in (1, 2):
        monkeypatch.setattr(paddle_compat, "_math_threads", n)
        masks.append(_dropout(x, 0.3, seed=3)[0] != 0)
    np.testing.assert_array_equal(masks[0], masks[1])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_and_independence(kernels, p):
    n = 1 << 20
    out, _, _ = _dropout(np.ones(n, "float32"), p, seed=1)
    kept = out != 0
    # a binomial count: within 5 standard deviations of n (1 - p)
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    # neighbours (the counter's low bits) and elements 8 apart (bits of one byte vs the next) independent
    for lag in (1, 8, 1024):
        both = (kept[:-lag] & kept[lag:]).mean()
        assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n), lag


def test_dropout_in_the_model_replays_under_recompute(kernels):
    """Dropout on, fast path: recomputed encoder layers (Paddle's recompute replays the generator)
    draw the same keys, so they rebuild the same masks and give the plain backward's gradients."""
    from paddle_electra.config import ElectraConfig
    from paddle_electra.modeling import ElectraDiscriminator, set_execution_modes
    cfg = ElectraConfig(vocab_size=50, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
    ids = paddle.to_tensor(np.arange(24).reshape(2, 12) % 50)
    results = []
    for recompute in (False, True):
        paddle.seed(1)
        model = set_execution_modes(ElectraDiscriminator(cfg), fast_cpu_kernels=True, recompute=recompute)
        model.train()
        paddle.seed(2)
        out = model(ids)
        (out * paddle.arange(12, dtype=out.dtype)).sum().backward()
        results.append((out.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters()}))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
    for n, g in results[0][1].items():
        np.testing.assert_allclose(results[1][1][n], g, rtol=1e-5, atol=1e-7 * np.abs(g).max(), err_msg=n)

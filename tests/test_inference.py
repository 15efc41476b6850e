"""Static export + Paddle Inference predictor: parity with dygraph (fp32, bf16), API, cache, bucketing."""
import json
import os

import numpy as np
import paddle
import pytest

from paddle_electra import inference
from paddle_electra.inference import predictor, static_export
from paddle_electra.config import ElectraConfig
from paddle_electra.heads import (ElectraForQuestionAnswering, ElectraForSequenceClassification,
                                  ElectraForTokenClassification)
from paddle_electra.inference import ElectraPredictor, InferenceError, load_dygraph
from paddle_electra.modeling import ElectraForPreTraining, ElectraModel

# E != H so that embeddings_project is in the graph
TINY = ElectraConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
TINY_GEN = TINY.replace(hidden_size=32, num_attention_heads=1, intermediate_size=64)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {}
    paddle.seed(0)
    out["pretraining"] = ElectraForPreTraining(TINY, TINY_GEN).save_pretrained(str(root / "pretraining"))
    paddle.seed(1)
    out["seq-cls"] = ElectraForSequenceClassification(TINY, num_labels=3).save_pretrained(str(root / "cls"))
    paddle.seed(2)
    out["token-cls"] = ElectraForTokenClassification(TINY, num_labels=5).save_pretrained(str(root / "tok"))
    paddle.seed(3)
    out["reading-comprehension"] = ElectraForQuestionAnswering(TINY).save_pretrained(str(root / "qa"))
    return out


def _batch(B=4, S=48, seed=0):
    """Padded rows of different lengths, two segments (segment 1 from position 12). Every row has
    >= 22 real tokens in segment 1, so the QA head's top-20 beams never reach masked positions."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, TINY.vocab_size, (B, S)).astype("int64")
    lengths = np.linspace(S, 34, B).astype(int)
    mask = (np.arange(S)[None, :] < lengths[:, None]).astype("int64")
    ids[mask == 0] = 0
    types = np.zeros_like(ids)
    types[:, 12:] = 1
    types[mask == 0] = 0
    return ids, types, mask


def _dygraph(model_dir, task, ids, types, mask):
    model = load_dygraph(model_dir, task)
    with paddle.no_grad():
        out = model(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask))
    return tuple(o.numpy() for o in out) if isinstance(out, (tuple, list)) else (out.numpy(),)


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _dir_for(dirs, task):
    return dirs["pretraining"] if task in (None, "discriminator", "generator") else dirs[task]


TASKS = [None, "discriminator", "generator", "seq-cls", "token-cls", "reading-comprehension"]


@pytest.mark.parametrize("task", TASKS)
def test_fp32_matches_dygraph(dirs, task):
    model_dir = _dir_for(dirs, task)
    ids, types, mask = _batch()
    pred = ElectraPredictor.from_pretrained(model_dir, task=task, precision="fp32")
    got = _tuple(pred(ids, types, mask))
    want = _dygraph(model_dir, task, ids, types, mask)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.integer):  # the QA head's top-k indices
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, atol=1e-4, rtol=0)


def test_fp32_other_shapes_same_predictor(dirs):
    """oneDNN with dynamic shapes: one predictor, many (batch, length) pairs, each equal to dygraph."""
    pred = ElectraPredictor.from_pretrained(dirs["pretraining"], task="discriminator")
    model = load_dygraph(dirs["pretraining"], "discriminator")
    for B, S in [(1, 1), (3, 7), (2, 64), (5, 16), (3, 7), (1, 130)]:
        ids, types, mask = _batch(B, S, seed=S) if S >= 34 else (
            np.random.default_rng(S).integers(1, 1000, (B, S)), np.zeros((B, S), "int64"), np.ones((B, S), "int64"))
        with paddle.no_grad():
            want = model(paddle.to_tensor(ids), paddle.to_tensor(types), paddle.to_tensor(mask)).numpy()
        np.testing.assert_allclose(pred(ids, types, mask), want, atol=1e-4, rtol=0, err_msg=f"B={B} S={S}")


needs_bf16 = pytest.mark.skipif(not inference.cpu_supports_bf16() or inference.gpu_available(),
                                reason="CPU without native bf16 (AVX512-BF16 / AMX)")


@needs_bf16
@pytest.mark.parametrize("task", [None, "seq-cls"])
def test_bf16_close_to_dygraph(dirs, task):
    model_dir = _dir_for(dirs, task)
    ids, types, mask = _batch()
    got = _tuple(ElectraPredictor.from_pretrained(model_dir, task=task, precision="bf16")(ids, types, mask))
    fp32 = _tuple(ElectraPredictor.from_pretrained(model_dir, task=task, precision="fp32")(ids, types, mask))
    want = _dygraph(model_dir, task, ids, types, mask)
    for g, f, w in zip(got, fp32, want):
        diff = float(np.abs(g - w).max())
        print(f"bf16 vs dygraph fp32, task {task}: max |diff| {diff:.4g} (max |value| {np.abs(w).max():.3g})")
        # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%) in each GEMM input; two layers
        # of O(1) LayerNorm outputs end a few 1e-2 away. A wrong graph (e.g. no mask) is off by O(1).
        assert diff < 0.15
        cos = float((g * w).sum() / np.sqrt((g * g).sum() * (w * w).sum()))
        assert cos > 0.999
        # and bf16 really ran: the result is not the fp32 one
        assert float(np.abs(g - f).max()) > 1e-5


def test_bf16_refused_without_cpu_support(dirs, monkeypatch):
    monkeypatch.setattr(predictor, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(predictor, "gpu_available", lambda: False)
    with pytest.raises(InferenceError, match="AVX512-BF16 or AMX-BF16"):
        ElectraPredictor.from_pretrained(dirs["pretraining"], precision="bf16")


def test_bad_arguments(dirs):
    d = dirs["pretraining"]
    with pytest.raises(ValueError, match="unknown task 'sentiment'"):
        ElectraPredictor.from_pretrained(d, task="sentiment")
    with pytest.raises(ValueError, match="precision must be one of"):
        ElectraPredictor.from_pretrained(d, precision="fp16")
    with pytest.raises(InferenceError, match="no fine-tuned ElectraForSequenceClassification"):
        ElectraPredictor.from_pretrained(d, task="seq-cls")  # the head would be random
    with pytest.raises(FileNotFoundError, match="neither a folder nor a registered variant"):
        ElectraPredictor.from_pretrained(os.path.join(d, "missing"))
    pred = ElectraPredictor.from_pretrained(d)
    with pytest.raises(ValueError, match=r"2-D \[batch, seq_len\]"):
        pred([1, 2, 3])
    with pytest.raises(ValueError, match="ragged"):
        pred([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match=r"input_ids values must be in \[0, 21127\]"):
        pred([[1, 21128]])
    with pytest.raises(ValueError, match="token_type_ids has shape"):
        pred([[1, 2]], token_type_ids=[[0, 0, 0]])
    with pytest.raises(ValueError, match="attention_mask values"):
        pred([[1, 2]], attention_mask=[[1, 2]])
    with pytest.raises(ValueError, match="exceeds max_position_embeddings 512"):
        pred(np.ones((1, 513), "int64"))
    with pytest.raises(TypeError, match="must hold integers"):
        pred([[1.5, 2.0]])
    qa = ElectraPredictor.from_pretrained(dirs["reading-comprehension"], task="reading-comprehension")
    with pytest.raises(ValueError, match="needs token_type_ids"):
        qa(np.ones((1, 30), "int64"))
    with pytest.raises(ValueError, match="at least 20 tokens"):
        qa(np.ones((1, 10), "int64"), np.ones((1, 10), "int64"))


def test_defaults_are_dygraph_defaults(dirs):
    """No token types / mask: zeros and all-ones, as the dygraph forward."""
    ids = np.random.default_rng(5).integers(1, 1000, (2, 9))
    pred = ElectraPredictor.from_pretrained(dirs["pretraining"], task="discriminator")
    model = load_dygraph(dirs["pretraining"], "discriminator")
    with paddle.no_grad():
        want = model(paddle.to_tensor(ids)).numpy()
    np.testing.assert_allclose(pred(ids.tolist()), want, atol=1e-4, rtol=0)
    assert pred.num_threads >= 1 and "discriminator" in repr(pred)


def test_cache_reused_then_rebuilt_when_weights_change(tmp_path, monkeypatch):
    d = str(tmp_path / "m")
    paddle.seed(10)
    ElectraModel(TINY).save_pretrained(d)
    ids = np.random.default_rng(0).integers(1, 1000, (2, 11))
    first = ElectraPredictor.from_pretrained(d)
    out1 = first(ids)
    meta_file = os.path.join(d, "inference", "backbone", "export.json")
    meta1 = json.load(open(meta_file))

    calls = []
    real_export = static_export.export
    monkeypatch.setattr(static_export, "export", lambda *a, **k: calls.append(1) or real_export(*a, **k))
    again = ElectraPredictor.from_pretrained(d)  # same weights: no export
    assert calls == [] and again.export_dir == first.export_dir
    np.testing.assert_array_equal(again(ids), out1)

    paddle.seed(11)
    ElectraModel(TINY).save_pretrained(d)  # new weights, same config
    rebuilt = ElectraPredictor.from_pretrained(d)
    assert calls == [1]
    assert json.load(open(meta_file))["fingerprint"] != meta1["fingerprint"]
    out2 = rebuilt(ids)
    assert np.abs(out2 - out1).max() > 1e-2
    with paddle.no_grad():
        want = load_dygraph(d)(paddle.to_tensor(ids)).numpy()
    np.testing.assert_allclose(out2, want, atol=1e-4, rtol=0)

    # a config change alone (here the LayerNorm epsilon) also rebuilds
    cfg_file = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_file))
    cfg["layer_norm_eps"] = 1e-5
    json.dump(cfg, open(cfg_file, "w"))
    ElectraPredictor.from_pretrained(d)
    assert calls == [1, 1]


def test_read_only_model_dir_uses_home_cache(tmp_path, monkeypatch):
    d = str(tmp_path / "ro")
    paddle.seed(12)
    ElectraModel(TINY).save_pretrained(d)
    # running as root, chmod would not stop writes: make the folder look read-only instead
    monkeypatch.setattr(static_export, "_writable", lambda folder: False)
    pred = ElectraPredictor.from_pretrained(d)
    home = os.environ["PADDLE_ELECTRA_HOME"]  # tests/conftest.py points it into tmp_path
    assert pred.export_dir.startswith(os.path.join(home, ".inference_cache"))
    assert not os.path.exists(os.path.join(d, "inference"))
    ids = np.random.default_rng(1).integers(1, 1000, (1, 6))
    with paddle.no_grad():
        want = load_dygraph(d)(paddle.to_tensor(ids)).numpy()
    np.testing.assert_allclose(pred(ids), want, atol=1e-4, rtol=0)
    assert ElectraPredictor.from_pretrained(d).export_dir == pred.export_dir  # reused


@pytest.mark.parametrize("task", ["discriminator", "seq-cls", "token-cls"])
def test_bucketing_returns_input_order_equal_to_single_runs(dirs, task):
    model_dir = _dir_for(dirs, task)
    rng = np.random.default_rng(7)
    lengths = [5, 33, 1, 17, 17, 2, 40, 9, 26, 3, 12]
    seqs = [rng.integers(1, 1000, n).tolist() for n in lengths]
    types = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths]
    pred = ElectraPredictor.from_pretrained(model_dir, task=task)
    got = pred.predict_batches(seqs, types, batch_size=4)
    assert len(got) == len(seqs)
    for s, t, g in zip(seqs, types, got):
        alone = pred(np.array([s]), np.array([t]))[0]  # one sequence, no padding at all
        assert g.shape == alone.shape
        np.testing.assert_allclose(g, alone, atol=1e-4, rtol=0)
    if task == "discriminator":
        assert [g.shape for g in got] == [(n,) for n in lengths]


def test_bucketing_pads_to_the_qa_beam(dirs):
    d = dirs["reading-comprehension"]
    pred = ElectraPredictor.from_pretrained(d, task="reading-comprehension")
    seqs = [[101] + list(range(200, 200 + n)) + [102] for n in (3, 30)]
    types = [[0] * 2 + [1] * (len(s) - 2) for s in seqs]
    got = pred.predict_batches(seqs, types, batch_size=2)
    assert got[0][0].shape == (len(seqs[0]),)  # start logits trimmed to the sequence
    assert got[1][1].shape == (20,) and got[1][3].shape == (20, 20)  # beams untouched
    with pytest.raises(ValueError, match="needs token_type_ids"):
        pred.predict_batches(seqs)


def test_bucketing_rejects_bad_input(dirs):
    pred = ElectraPredictor.from_pretrained(dirs["pretraining"])
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        pred.predict_batches([[1, 2], []])
    with pytest.raises(ValueError, match="sequence 0: 2 input_ids but 1 token_type_ids"):
        pred.predict_batches([[1, 2]], [[0]])


def test_export_leaves_the_model_as_it_was(tmp_path):
    paddle.seed(13)
    model = ElectraModel(TINY)
    model.train()
    ids = paddle.to_tensor([[5, 6, 7]])
    inference.export(model, str(tmp_path / "e"))
    assert model.training  # mode restored
    model.eval()
    with paddle.no_grad():
        out = model(ids)  # still dygraph: optional arguments may be None again
    assert isinstance(out, paddle.Tensor) and out.shape == [1, 3, TINY.hidden_size]
    assert sorted(os.listdir(tmp_path / "e")) == ["export.json", "model.json", "model.pdiparams"]


def test_predict_texts_tokenizes_with_the_model_vocab(dirs):
    from paddle_electra.tokenizer import ElectraTokenizer
    pred = ElectraPredictor.from_pretrained(dirs["pretraining"], task="discriminator")
    texts, pairs = ["今天天气很好", "这本书不错。"], ["是的", "我也觉得很好看"]
    got = pred.predict_texts(texts, pairs, max_seq_length=8)
    enc = ElectraTokenizer.from_pretrained(dirs["pretraining"])(texts, pairs, max_length=8, truncation=True)
    for g, ids, types in zip(got, enc["input_ids"], enc["token_type_ids"]):
        assert len(ids) <= 8 and g.shape == (len(ids),)
        np.testing.assert_allclose(g, pred(np.array([ids]), np.array([types]))[0], atol=1e-4, rtol=0)


def test_text_matching_shares_the_seq_cls_export(dirs):
    a = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls")
    b = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="text-matching")
    assert a.export_dir == b.export_dir and a.export_dir.endswith(os.path.join("inference", "seq-cls"))


@pytest.mark.parametrize("task", TASKS)
def test_spec_length_axes_are_the_exported_graphs(dirs, task):
    """DygraphPredictor cuts outputs by the spec's declared length axes, ElectraPredictor by the axes
    probed on the export: they must agree, so both paths return the same shapes."""
    from paddle_electra.tasks import DygraphPredictor, get_spec
    model_dir = _dir_for(dirs, task)
    pred = ElectraPredictor.from_pretrained(model_dir, task=task)
    model = load_dygraph(model_dir, task)
    assert pred.seq_axes == get_spec(task).seq_axes(model)
    seqs = [[101] + list(range(200, 200 + n)) + [102] for n in (25, 31)]
    types = [[0] * 3 + [1] * (len(s) - 3) for s in seqs]
    for a, b in zip(pred.predict_batches(seqs, types, batch_size=2),
                    DygraphPredictor(model, get_spec(task)).predict_batches(seqs, types, batch_size=2)):
        for x, y in zip(_tuple(a), _tuple(b)):
            assert x.shape == y.shape
            if np.issubdtype(x.dtype, np.integer):
                continue  # top-k indices may swap on near ties across kernels
            np.testing.assert_allclose(x, y, atol=1e-4, rtol=0)

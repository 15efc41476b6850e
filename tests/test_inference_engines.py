"""ElectraPredictor's engines (Paddle Inference, ONNX Runtime, OpenVINO): the same outputs and decisions from
each, int8 close to fp32, the "auto" rule and its overrides, the choice recorded in export.json, the ONNX
graphs kept in the signed cache (a changed one is rebuilt), `serve --engine`."""
import argparse
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import paddle
import pytest

from paddle_electra import inference
from paddle_electra.inference import cache, choice, rewrites, static_export
from paddle_electra.heads import (ElectraForQuestionAnswering, ElectraForSequenceClassification,
                                  ElectraForTokenClassification)
from paddle_electra.inference import ElectraPredictor, InferenceError, choose_engine
from paddle_electra.modeling import ElectraDiscriminator
from test_inference import TINY, _batch


def _have(*modules):
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_ort = pytest.mark.skipif(not _have("onnxruntime", "paddle2onnx"),
                               reason="onnxruntime and paddle2onnx are not installed (the test extra has them)")
needs_ov = pytest.mark.skipif(not _have("openvino", "paddle2onnx"),
                              reason="openvino is not installed (the hub extra has it)")

MODELS = {"discriminator": (ElectraDiscriminator, {}), "seq-cls": (ElectraForSequenceClassification, {"num_labels": 3}),
          "token-cls": (ElectraForTokenClassification, {"num_labels": 5}),
          "reading-comprehension": (ElectraForQuestionAnswering, {})}


@pytest.fixture(scope="module")
def module_home(tmp_path_factory):
    return str(tmp_path_factory.mktemp("electra_home"))


@pytest.fixture(autouse=True)
def _one_home(module_home, monkeypatch):
    """One install key for the module, so the graphs converted by one test are reused by the next; the auto
    rule itself (tests/conftest.py pins the Paddle engine for the other test files)."""
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", module_home)
    monkeypatch.delenv(inference.ENGINE_ENV, raising=False)
    # the measurement's rules at a test's scale: 2 rounds, no pause between turns (the pauses were 13 s per test)
    monkeypatch.setattr(choice, "AUTO_MAX_ROUNDS", 2)
    monkeypatch.setattr(choice, "AUTO_SETTLE", 0.0)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine_models")
    out = {}
    for seed, (task, (cls, kw)) in enumerate(MODELS.items()):
        paddle.seed(seed)
        out[task] = cls(TINY, **kw).save_pretrained(str(root / task))
    return out


def _fresh(tmp_path, task="seq-cls", seed=7):
    cls, kw = MODELS[task]
    paddle.seed(seed)
    return cls(TINY, **kw).save_pretrained(str(tmp_path / "m"))


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _assert_same(got, want, rtol=1e-4, atol=1e-4):
    """The same outputs: count, shapes, dtypes; integers (the QA head's top-k positions) exactly."""
    got, want = _tuple(got), _tuple(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


# --- outputs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", [pytest.param("onnxruntime", marks=needs_ort), pytest.param("openvino", marks=needs_ov)])
@pytest.mark.parametrize("task", ["discriminator", "seq-cls", "reading-comprehension"])
def test_fp32_engines_give_the_paddle_outputs(dirs, engine, task):
    """fp32 within 1e-4 (relative and absolute) of Paddle Inference's, the same labels, the same objects from
    __call__ and predict_batches (padded rows, two segments, ragged lists)."""
    ids, types, mask = _batch()
    ref = ElectraPredictor.from_pretrained(dirs[task], task=task, engine="paddle")
    pred = ElectraPredictor.from_pretrained(dirs[task], task=task, engine=engine)
    assert pred.engine == engine and ref.engine == "paddle"
    want, got = ref(ids, types, mask), pred(ids, types, mask)
    _assert_same(got, want)
    if task == "seq-cls":
        np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    rows = [list(r[m == 1]) for r, m in zip(ids, mask)]
    row_types = [list(t[m == 1]) for t, m in zip(types, mask)]
    for g, w in zip(pred.predict_batches(rows, row_types, batch_size=3), ref.predict_batches(rows, row_types, batch_size=3)):
        _assert_same(g, w)


@needs_ort
def test_int8_is_quantized_and_close_to_fp32(dirs, monkeypatch):
    """Dynamic int8 (MatMul weights QInt8, activations quantized per call) against Paddle fp32 on random
    2-layer weights. Measured on AMD EPYC (AVX2, seeds 1-3): max |logit diff| 2-3% of the largest fp32 logit,
    98-99% of the token labels and 16 of 16 sentence labels the same (with 8-bit weights, which saturate
    ONNX Runtime's kernels on CPUs without VNNI: 13-21% and 94-97%). Stated here: diff <= 10% of the largest
    logit, >= 95% of token labels and >= 15 of 16 sentence labels agree; an unquantized graph fails the
    lower bound."""
    import onnx
    rng = np.random.default_rng(1)
    ids = rng.integers(1, TINY.vocab_size, (16, 48)).astype("int64")
    types = np.zeros_like(ids)
    types[:, 12:] = 1
    for task, min_agree in (("seq-cls", 15 / 16), ("token-cls", 0.95)):
        want = ElectraPredictor.from_pretrained(dirs[task], task=task, engine="paddle")(ids, types)
        pred = ElectraPredictor.from_pretrained(dirs[task], task=task, engine="onnxruntime", precision="int8")
        assert os.path.basename(pred.graph) == inference.ONNX_INT8
        ops = {n.op_type for n in onnx.load(pred.graph).graph.node}
        assert {"DynamicQuantizeLinear", "MatMulInteger", "QAttention"} <= ops, ops
        got = pred(ids, types)
        assert got.shape == want.shape and got.dtype == want.dtype
        diff = np.abs(got - want).max()
        assert 1e-4 < diff <= 0.1 * np.abs(want).max(), (task, diff)
        agree = (got.argmax(-1) == want.argmax(-1)).mean()
        assert agree >= min_agree, (task, agree)
    # 7-bit weights only where the CPU lacks VNNI; the recipe holds the choice, so another CPU remakes the graph
    from cpus import CPUS
    for name, info in CPUS.items():  # every family met, whichever this machine is
        monkeypatch.setattr(rewrites, "cpu_info", lambda info=info: info)
        pred = ElectraPredictor.from_pretrained(dirs["token-cls"], task="token-cls", engine="onnxruntime",
                                                precision="int8")
        assert pred.meta["derived"][inference.ONNX_INT8]["recipe"]["reduce_range"] == (name == "amd-zen3"), name
    with pytest.raises(ValueError, match="runs on engine=.onnxruntime. only"):
        ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="openvino", precision="int8")


# --- the choice -----------------------------------------------------------------------------------------
def test_choice_overrides_and_refusals(dirs, monkeypatch):
    assert choose_engine("auto", "fp32", "gpu")[0] == "paddle"
    assert choose_engine("auto", "fp32", "gpu:1")[0] == "paddle"
    assert choose_engine("auto", "bf16", "gpu")[0] == "paddle"
    assert choose_engine("paddle") == ("paddle", "engine='paddle' asked for")
    with pytest.raises(ValueError, match="'onnx'"):
        choose_engine("onnx")
    with pytest.raises(ValueError, match="'onnx'"):
        ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="onnx")
    with pytest.raises(ValueError, match="precision='int8' is not available with engine='paddle'"):
        choose_engine("paddle", "int8")
    with pytest.raises(ValueError, match="bf16.*paddle.*openvino"):
        choose_engine("onnxruntime", "bf16")
    with pytest.raises(InferenceError, match="runs on CPU"):
        choose_engine("onnxruntime", "fp32", "gpu")
    with pytest.raises(ValueError, match="int8"):
        choose_engine("auto", "int8", "gpu")
    monkeypatch.setenv(inference.ENGINE_ENV, "paddle")
    assert choose_engine() == ("paddle", f"set by ${inference.ENGINE_ENV}")
    monkeypatch.setenv(inference.ENGINE_ENV, "tensorrt")
    with pytest.raises(ValueError, match=r"PADDLE_ELECTRA_ENGINE.*'tensorrt'"):
        choose_engine()
    assert choose_engine("paddle")[0] == "paddle"  # the argument wins over the variable


@pytest.mark.parametrize("installed", [(), ("onnxruntime",), ("openvino",), ("onnxruntime", "openvino")])
def test_auto_takes_for_each_precision_the_engines_installed_that_run_it(monkeypatch, installed):
    """fp32: every engine; bf16: Paddle Inference and OpenVINO; int8: ONNX Runtime. One such engine installed:
    that one, said why; several: ("auto", ...), which the predictor measures (the packages are faked here:
    the predictor-level measurement is tested below and, for bf16, on CPUs with native bf16)."""
    monkeypatch.setattr(choice, "importable", lambda m: m in installed or m == "paddle2onnx")
    want = {"fp32": ["paddle", *installed], "bf16": ["paddle"] + [e for e in installed if e == "openvino"],
            "int8": [e for e in installed if e == "onnxruntime"]}
    for precision, engines in want.items():
        assert choice.auto_candidates(precision) == engines, precision
        if not engines:  # int8 without onnxruntime: the package is named
            with pytest.raises(ImportError, match="pip install onnxruntime"):
                choose_engine("auto", precision)
            continue
        engine, why = choose_engine("auto", precision)
        if len(engines) > 1:
            assert (engine, why) == ("auto", f"measured among {', '.join(engines)}"), precision
        else:
            assert engine == engines[0] and "only" in why, (precision, why)


def test_missing_onnxruntime_is_named(dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    monkeypatch.setitem(sys.modules, "openvino", None)
    engine, why = choose_engine()
    assert engine == "paddle" and "onnxruntime" in why  # auto skips it, saying why
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        choose_engine("onnxruntime")
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        choose_engine("auto", "int8")
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="onnxruntime")


@needs_ov
@pytest.mark.skipif(not inference.cpu_supports_bf16(), reason="CPU without native bf16 (AVX512-BF16 / AMX): "
                    "the choice of bf16 engines is tested above on faked packages")
def test_bf16_on_openvino_and_auto_bf16_measures_paddle_and_openvino(tmp_path, monkeypatch):
    """OpenVINO compiles the graph with the bf16 precision hint; its outputs are within bf16's rounding of fp32;
    precision="bf16" with engine="auto" times Paddle Inference and OpenVINO and records it in its own slot."""
    d = _fresh(tmp_path)
    ids, types, mask = _batch()
    want = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="paddle")(ids, types, mask)
    ov = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="openvino", precision="bf16")
    hint = ov._run.compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino.Type (2026.x), or its name
    assert (hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)) == "bf16"
    got = ov(ids, types, mask)
    assert 1e-5 < float(np.abs(got - want).max()) < 0.15  # bf16 ran, and within its rounding (test_inference.py)
    timed = []
    measure = choice.measure_engines
    monkeypatch.setattr(choice, "measure_engines", lambda runners, *a: timed.append(sorted(runners)) or
                        measure(runners, *a))
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls", precision="bf16")
    assert timed == [["openvino", "paddle"]]
    record = _measured(pred, "cpu-bf16")
    assert pred.engine == record["engine"] == min(record["figures"], key=lambda e: record["figures"][e]["score_ms"])
    assert record["measured_on"]["precision"] == "bf16"


def _measured(pred, slot="cpu-fp32"):
    return json.load(open(os.path.join(pred.export_dir, inference.EXPORT_META)))["engine_choice"][slot]


@needs_ort
def test_auto_measures_the_engines_records_it_and_reuses_the_cache(tmp_path, monkeypatch, caplog):
    d = _fresh(tmp_path)
    ids, types, mask = _batch()
    caplog.set_level("INFO", logger="paddle_electra.inference")
    assert choose_engine()[0] == "auto"  # several engines installed: the predictor measures them
    timed = []
    measure = choice.measure_engines
    monkeypatch.setattr(choice, "measure_engines", lambda runners, *a: timed.append(sorted(runners)) or
                        measure(runners, *a))
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls")
    assert timed == [sorted(inference.auto_candidates("fp32"))]
    record = _measured(pred)
    figures = record["figures"]
    assert set(figures) == set(timed[0]) and all(f["batch_ms"] > 0 and f["single_ms"] > 0 for f in figures.values())
    assert pred.engine == record["engine"] == min(figures, key=lambda e: figures[e]["score_ms"])
    assert pred.engine_reason == record["reason"] and pred.engine_reason.startswith("auto: fastest here (")
    assert choice.cpu_info().describe() in pred.engine_reason  # this CPU's figures, not another's
    assert "onnxruntime (fused graph)" in pred.engine_reason and "paddle " in pred.engine_reason
    assert record["measured_on"] == choice._measure_key("fp32", pred.num_threads)
    fusion = pred.meta["derived"][inference.ONNX_FUSED]["fusion"]  # the attention of every layer (rewrites._fusable)
    assert fusion["Attention"] == TINY.num_hidden_layers and fusion["SkipLayerNormalization"] > 0, fusion
    first = pred(ids, types, mask)
    _assert_same(first, ElectraPredictor.from_pretrained(d, task="seq-cls", engine="paddle")(ids, types, mask))
    # a second predictor reads the record and the cached graphs: nothing measured, exported or converted again
    monkeypatch.setattr(static_export, "export", lambda *a, **k: pytest.fail("re-exported"))
    monkeypatch.setattr(rewrites, "_paddle2onnx", lambda *a, **k: pytest.fail("re-converted"))
    from onnxruntime.transformers import optimizer
    monkeypatch.setattr(optimizer, "optimize_model", lambda *a, **k: pytest.fail("re-fused"))
    again = ElectraPredictor.from_pretrained(d, task="seq-cls")
    assert (again.engine, again.engine_reason, len(timed)) == (pred.engine, pred.engine_reason, 1)
    _assert_same(again(ids, types, mask), first)
    said = [r for r in caplog.records if f"engine {pred.engine} (auto" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "INFO"
    # asked for, or on another CPU / thread count / package versions: measured again
    ElectraPredictor.from_pretrained(d, task="seq-cls", remeasure=True)
    ElectraPredictor.from_pretrained(d, task="seq-cls", num_threads=pred.num_threads + 1)
    assert len(timed) == 3
    # the variable overrides auto, and the record follows
    monkeypatch.setenv(inference.ENGINE_ENV, "paddle")
    assert ElectraPredictor.from_pretrained(d, task="seq-cls").engine == "paddle"
    meta = json.load(open(os.path.join(pred.export_dir, inference.EXPORT_META)))
    assert meta["engine"]["cpu-fp32"]["reason"] == f"set by ${inference.ENGINE_ENV}"


@needs_ort
def test_auto_without_the_optional_packages_predicts_and_says_what_it_ran(tmp_path, monkeypatch):
    """The hub install has no torch; sympy or ml_dtypes may be missing too: the fusion and the quantizer are
    optional, so auto still predicts, from the engines that load, with a reason that says the graph is unfused."""
    for name, module in list(sys.modules.items()):  # imported by earlier tests (some under top-level names):
        where = getattr(module, "__file__", None) or ""  # import them again, now without the packages
        if any(f"{os.sep}onnxruntime{os.sep}{sub}{os.sep}" in where for sub in ("transformers", "quantization", "tools")):
            monkeypatch.delitem(sys.modules, name)
    for name in ("sympy", "torch", "ml_dtypes"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    d = _fresh(tmp_path)
    ids, types, mask = _batch()
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls")
    _assert_same(pred(ids, types, mask),
                 ElectraPredictor.from_pretrained(d, task="seq-cls", engine="paddle")(ids, types, mask))
    assert pred.meta["derived"][inference.ONNX_FUSED]["fusion"].startswith("failed: ")
    figures = _measured(pred)["figures"]
    assert pred.engine == min(figures, key=lambda e: figures[e]["score_ms"])
    assert "onnxruntime (unfused graph: failed: " in pred.engine_reason and "fused graph)" not in pred.engine_reason
    with pytest.raises(InferenceError, match="precision='int8' needs onnxruntime.quantization.*ml_dtypes"):
        ElectraPredictor.from_pretrained(d, task="seq-cls", precision="int8")


@needs_ort
def test_a_changed_onnx_graph_is_rebuilt(tmp_path, caplog):
    d = _fresh(tmp_path)
    ids, types, mask = _batch()
    want = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="paddle")(ids, types, mask)
    int8 = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime", precision="int8")
    fused = os.path.join(int8.export_dir, inference.ONNX_FUSED)
    assert np.abs(int8(ids, types, mask) - want).max() > 1e-3  # the int8 graph gives other logits
    with open(int8.graph, "rb") as f:
        int8_bytes = f.read()
    shutil.copyfile(int8.graph, fused)  # a valid graph, not the one this install made
    caplog.set_level("WARNING", logger="paddle_electra.inference")
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime")
    assert any("not written by this install" in r.getMessage() for r in caplog.records)
    _assert_same(pred(ids, types, mask), want)
    with open(os.path.join(pred.export_dir, inference.ONNX_FUSED), "rb") as f:
        assert f.read() != int8_bytes


@needs_ort
def test_a_graph_is_remade_with_the_graph_it_was_made_from(tmp_path, monkeypatch):
    d = _fresh(tmp_path)
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime", precision="int8")

    def older_fusion(meta):  # as if another onnxruntime version had made the fused graph
        meta["derived"][inference.ONNX_FUSED]["recipe"]["onnxruntime"] = "0.0"
    cache.update_meta(pred.export_dir, pred.meta["fingerprint"], older_fusion)
    made = []
    write = cache.write_file
    monkeypatch.setattr(cache, "write_file", lambda path, build: made.append(os.path.basename(path)) or
                        write(path, build))
    again = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime", precision="int8")
    assert made == [inference.ONNX_FUSED, inference.ONNX_INT8]  # not the plain graph, which did not change
    ids, types, mask = _batch()
    np.testing.assert_allclose(again(ids, types, mask), pred(ids, types, mask), atol=1e-5)


@needs_ort
def test_a_failed_fusion_runs_the_plain_graph_and_says_so(tmp_path, monkeypatch, caplog):
    from onnxruntime.transformers import optimizer

    def fail(*a, **k):
        raise RuntimeError("no pattern")
    monkeypatch.setattr(optimizer, "optimize_model", fail)
    d = _fresh(tmp_path, "discriminator")
    ids, types, mask = _batch()
    caplog.set_level("WARNING", logger="paddle_electra.inference")
    pred = ElectraPredictor.from_pretrained(d, task="discriminator", engine="onnxruntime")
    assert any("optimizer failed (RuntimeError: no pattern)" in r.getMessage() for r in caplog.records)
    assert pred.meta["derived"][inference.ONNX_FUSED]["fusion"] == "failed: RuntimeError: no pattern"
    _assert_same(pred(ids, types, mask),
                 ElectraPredictor.from_pretrained(d, task="discriminator", engine="paddle")(ids, types, mask))


@needs_ort
def test_a_cache_that_cannot_take_the_onnx_graph(tmp_path, monkeypatch, caplog):
    """auto falls back to Paddle Inference, saying why; an explicit engine is an error naming the folder."""
    d = _fresh(tmp_path)

    def read_only(path, build):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(cache, "write_file", read_only)
    caplog.set_level("WARNING", logger="paddle_electra.inference")
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls")
    assert pred.engine == "paddle" and pred.engine_reason.startswith("auto: the only engine that loads here")
    assert "onnxruntime left out (InferenceError: " in pred.engine_reason
    assert "cannot write the onnxruntime graph there (Permission denied)" in pred.engine_reason
    assert any("engine onnxruntime left out of the auto choice" in r.getMessage() for r in caplog.records)
    with pytest.raises(InferenceError, match="cannot write the onnxruntime graph there"):
        ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime")


@needs_ort
def test_without_the_rewrites_the_attention_does_not_fuse_and_it_is_said(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(rewrites, "_fusable", lambda model: (model, {}))  # paddle2onnx's graph as it comes
    d = _fresh(tmp_path)
    caplog.set_level("WARNING", logger="paddle_electra.inference")
    pred = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="onnxruntime")
    assert "Attention" not in pred.meta["derived"][inference.ONNX_FUSED]["fusion"]
    assert any(f"attention of 0 of {TINY.num_hidden_layers} layers" in r.getMessage() for r in caplog.records)


@needs_ort
def test_the_rewrites_match_the_op_order_of_modeling(tmp_path):
    """rewrites._fusable keys on the ops modeling.attention (scores * (1/sqrt d) + mask -> softmax) and
    modeling.additive_attention_mask ((1 - mask) * -10000) export to: the one mask and every layer's score
    scale are rewritten, and every layer's attention fuses. A change of that order in modeling.py fails here."""
    pred = ElectraPredictor.from_pretrained(_fresh(tmp_path), task="seq-cls", engine="onnxruntime")
    fused = pred.meta["derived"][inference.ONNX_FUSED]
    assert fused["rewrites"] == {"masks": 1, "score_divs": TINY.num_hidden_layers}, fused
    assert fused["fusion"]["Attention"] == TINY.num_hidden_layers, fused


# --- serving --------------------------------------------------------------------------------------------
def test_serve_engine_option_reaches_every_module(monkeypatch):
    from paddle_electra import serving
    seen = {}

    def load_modules(info, *rest):
        seen.update(info)
        raise serving.ServeError("stop here")
    monkeypatch.setattr(serving, "load_modules", load_modules)
    p = argparse.ArgumentParser()
    serving.add_arguments(p)
    assert serving.run(p.parse_args(["-m", "chinese-electra-small", "chinese-electra-base==2.0",
                                     "--engine", "openvino"])) == 2
    assert {k: v["init_args"] for k, v in seen.items()} == {
        "chinese-electra-small": {"engine": "openvino"}, "chinese-electra-base": {"version": "2.0", "engine": "openvino"}}
    seen.clear()
    assert serving.run(p.parse_args(["-m", "chinese-electra-small"])) == 2
    assert seen["chinese-electra-small"]["init_args"] == {}  # the module's default: auto
    with pytest.raises(SystemExit):
        p.parse_args(["-m", "x", "--engine", "onnx"])

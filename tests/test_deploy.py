"""`paddle-electra predict` and `paddle-electra export onnx|paddle-inference` on tiny randomly initialised
fine-tuned-style folders: outputs, named graph outputs equal to the predictor's, file modes, the model
card, refusals with one-line errors."""
import json
import os
import stat

import numpy as np
import paddle
import pytest

from paddle_electra import cli, model_card
from paddle_electra.config import ElectraConfig
from paddle_electra.heads import ElectraForSequenceClassification, ElectraForTokenClassification
from paddle_electra.inference import ElectraPredictor

TINY = ElectraConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
LABELS = ["negative", "positive"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    paddle.seed(4)
    cls = ElectraForSequenceClassification(TINY, id2label=LABELS).save_pretrained(str(root / "cls"))
    paddle.seed(5)
    tok = ElectraForTokenClassification(TINY, id2label=["O", "B-PER", "I-PER"]).save_pretrained(str(root / "tok"))
    return {"seq-cls": cls, "token-cls": tok}


def _feeds(n=3, S=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 2000, (n, S)).astype("int64")
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _umask():
    u = os.umask(0)
    os.umask(u)
    return u


# --- predict ------------------------------------------------------------------------------------------------
def test_predict_text_and_json_lines_to_an_output_file(dirs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text('房间很干净\n{"text": "今天天气不错", "text_pair": "我很喜欢"}\n\n太差了\n', encoding="utf-8")
    out = tmp_path / "out" / "pred.jsonl"
    assert cli.main(["predict", dirs["seq-cls"], "--input", str(src), "--output", str(out), "--engine", "paddle"]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 4]  # the blank line 3 is skipped, lines keep their numbers
    assert all(r["label"] in LABELS and 0.5 <= r["score"] <= 1.0 for r in rows)
    assert _mode(out) == 0o666 & ~_umask()  # not mkstemp's 0600
    assert [p.name for p in out.parent.iterdir()] == ["pred.jsonl"]  # no temporary file left
    # the same as the predictor's own logits
    pred = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="paddle")
    logits = pred.predict_texts(["房间很干净"])[0]
    assert rows[0]["label"] == LABELS[int(np.argmax(logits))]


def test_predict_token_cls_from_stdin_to_stdout(dirs, monkeypatch, capsys):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("王小明在北京工作\n李华\n"))
    assert cli.main(["predict", dirs["token-cls"], "--input", "-", "--engine", "paddle"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in rows] == [1, 2]
    text = "王小明在北京工作"
    for e in rows[0]["entities"]:
        assert text[e["start"]:e["end"]] == e["text"] and e["label"] == "PER"


@pytest.mark.parametrize("content, message", [
    ('好\n{"txt": "a"}\n', "in.txt: line 2: unknown field 'txt' (did you mean 'text'?)"),
    ('好\n{"text": "a"\n', "in.txt: line 2: not valid JSON"),
    ('好\n{"text": 3}\n', "in.txt: line 2: field 'text' must be a string"),
    ("\n\n", "in.txt: no input"),
])
def test_predict_bad_lines_are_one_line_errors(dirs, tmp_path, capsys, content, message):
    src = tmp_path / "in.txt"
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    assert cli.main(["predict", dirs["seq-cls"], "--input", str(src), "--output", str(out), "--engine", "paddle"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("paddle-electra predict: error: ") and message in err
    assert not out.exists()


def test_predict_refuses_a_task_the_model_has_no_head_for(dirs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("好\n", encoding="utf-8")
    assert cli.main(["predict", dirs["seq-cls"], "--input", str(src), "--task", "token-cls",
                     "--engine", "paddle"]) == 1
    assert "not a model fine-tuned for task 'token-cls'" in capsys.readouterr().err


# --- export -------------------------------------------------------------------------------------------------
def test_export_onnx_is_self_contained_with_named_outputs(dirs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    out = tmp_path / "onnx"
    assert cli.main(["export", "onnx", dirs["seq-cls"], str(out)]) == 0
    names = sorted(os.listdir(out))
    assert names == ["README.md", "config.json", "export.json", "label_map.json", "model.onnx", "vocab.txt"]
    for n in names:
        assert _mode(out / n) == 0o666 & ~_umask(), n
    assert _mode(out) == 0o777 & ~_umask()
    info = json.loads((out / "export.json").read_text())
    assert info["format"] == "onnx" and info["precision"] == "fp32" and info["task"] == "seq-cls"
    assert info["labels"] == LABELS and [o["name"] for o in info["outputs"]] == ["logits"]
    assert info["outputs"][0]["shape"] == ["batch", 2]
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "token_type_ids", "attention_mask"]
    assert info["versions"]["paddle-electra"] and info["versions"]["paddle2onnx"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["logits"]
    feeds = _feeds()
    (got,) = sess.run(["logits"], feeds)
    want = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="paddle")(**feeds)
    np.testing.assert_allclose(got, want, atol=1e-4)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert card.startswith(model_card.MARKER) and "seq-cls" in card and "negative, positive" in card
    assert "paddle-electra export onnx" in card or "export onnx" in card


def test_export_onnx_backbone_and_token_cls_output_names(dirs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    cli.main(["export", "onnx", dirs["token-cls"], str(tmp_path / "tok")])
    cli.main(["export", "onnx", dirs["token-cls"], str(tmp_path / "enc"), "--task", "backbone"])
    for name, want, shape in (("tok", "logits", ["batch", "sequence", 3]),
                              ("enc", "last_hidden_state", ["batch", "sequence", 64])):
        info = json.loads((tmp_path / name / "export.json").read_text())
        assert [o["name"] for o in info["outputs"]] == [want] and info["outputs"][0]["shape"] == shape
        sess = ort.InferenceSession(str(tmp_path / name / "model.onnx"), providers=["CPUExecutionProvider"])
        (out,) = sess.run([want], _feeds())
        assert out.shape == (3, 12, shape[2])


def test_export_onnx_int8_runs_close_to_fp32(dirs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    out = tmp_path / "int8"
    assert cli.main(["export", "onnx", dirs["seq-cls"], str(out), "--precision", "int8"]) == 0
    info = json.loads((out / "export.json").read_text())
    assert info["precision"] == "int8" and "ONNX Runtime" in info["runtime"]
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    import onnx
    assert any(n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "QAttention")
               for n in onnx.load(str(out / "model.onnx")).graph.node)
    feeds = _feeds()
    (got,) = sess.run(["logits"], feeds)
    want = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="paddle")(**feeds)
    assert np.abs(got - want).max() < 0.25 * max(1.0, np.abs(want).max())


def test_export_paddle_inference_runs_in_paddle_inference(dirs, tmp_path):
    out = tmp_path / "pi"
    assert cli.main(["export", "paddle-inference", dirs["seq-cls"], str(out)]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "export.json", "label_map.json", "model.json",
                                       "model.pdiparams", "vocab.txt"]
    from paddle import inference as pi
    cfg = pi.Config(str(out / "model.json"), str(out / "model.pdiparams"))
    cfg.disable_gpu()
    predictor = pi.create_predictor(cfg)
    feeds = _feeds()
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(feeds[name])
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    want = ElectraPredictor.from_pretrained(dirs["seq-cls"], task="seq-cls", engine="paddle")(**feeds)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("fmt, precision, message", [
    ("onnx", "bf16", "--precision bf16 is not available for onnx"),
    ("paddle-inference", "int8", "--precision int8 is not available for paddle-inference"),
])
def test_export_refuses_precisions_with_a_reason(dirs, tmp_path, capsys, fmt, precision, message):
    assert cli.main(["export", fmt, dirs["seq-cls"], str(tmp_path / "x"), "--precision", precision]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_export_keeps_the_users_readme_and_refuses_foreign_folders(dirs, tmp_path, capsys):
    out = tmp_path / "pi"
    assert cli.main(["export", "paddle-inference", dirs["seq-cls"], str(out)]) == 0
    (out / "README.md").write_text("# my notes\n", encoding="utf-8")
    assert cli.main(["export", "paddle-inference", dirs["seq-cls"], str(out), "--precision", "bf16"]) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == "# my notes\n"  # kept
    assert json.loads((out / "export.json").read_text())["precision"] == "bf16"  # the export itself replaced
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert cli.main(["export", "paddle-inference", dirs["seq-cls"], str(other)]) == 1
    assert "is not empty" in capsys.readouterr().err and (other / "notes.txt").read_text() == "mine"
    assert cli.main(["export", "onnx", dirs["seq-cls"], dirs["seq-cls"]]) == 1  # never into its input
    assert "the input" in capsys.readouterr().err


def test_predict_stdout_holds_only_json_lines_and_no_third_party_noise(dirs, tmp_path):
    """A real process on the ONNX engine: paddle2onnx's prints (C++ and Python) and the ccache / PIR notices
    never reach stdout, and the ones users cannot act on are not printed at all."""
    import subprocess
    import sys
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    import shutil
    model = tmp_path / "cls"
    shutil.copytree(dirs["seq-cls"], model, ignore=shutil.ignore_patterns("inference"))  # convert afresh
    src = tmp_path / "in.txt"
    src.write_text("房间很干净\n太差了\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "GLOG_minloglevel"}
    r = subprocess.run([sys.executable, "-m", "paddle_electra.cli", "predict", str(model), "--input", str(src),
                        "--engine", "onnxruntime"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines()]  # every stdout line is JSON
    assert [x["line"] for x in rows] == [1, 2] and all(x["label"] in LABELS for x in rows)
    for noise in ("No ccache found", "not support input out tensor", "Fail to optimize onnx model"):
        assert noise not in r.stderr

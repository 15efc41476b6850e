"""PaddleHub modules chinese-electra-small / -base: install, load by name and directory, every task,
embeddings, checkpoints, hub.Trainer (the server: test_serving.py).

Weights are `paddle-electra init` (random, 2 layers) in a temporary PADDLE_ELECTRA_HOME; modules are
installed into a temporary HUB_HOME.
"""
import atexit
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

# before paddlehub is imported: it creates its folders under HUB_HOME at import time
_HUB_HOME = tempfile.mkdtemp(prefix="paddle-electra-hub-test-")
atexit.register(shutil.rmtree, _HUB_HOME, True)
if "paddlehub" not in sys.modules:
    os.environ["HUB_HOME"] = _HUB_HOME

hub = pytest.importorskip("paddlehub")
paddle = pytest.importorskip("paddle")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {"chinese-electra-small": os.path.join(ROOT, "hub_modules", "chinese_electra_small"),
           "chinese-electra-base": os.path.join(ROOT, "hub_modules", "chinese_electra_base")}
PY = sys.executable
MSRA_LABELS = ["B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O"]
CONTEXT = ("《红楼梦》是中国古代章回体长篇小说，作者一般认为是清代的曹雪芹。小说以贾、史、王、薛四大家族的兴衰为背景，"
           "以贾宝玉和林黛玉的爱情悲剧为主线，描写了封建社会末期的人情世态。")


def _env(home):
    env = dict(os.environ, HUB_HOME=_HUB_HOME, PADDLE_ELECTRA_HOME=home, PADDLE_ELECTRA_NUM_THREADS="1",
               HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=ROOT)
    return env


@pytest.fixture(scope="module")
def electra_home(tmp_path_factory):
    """Random weights where the modules look for them: small with 2 layers, base with 1."""
    from paddle_electra.cli import main
    home = tmp_path_factory.mktemp("electra_home")
    main(["init", "chinese-electra-small", "--output", str(home / "chinese-electra-small"), "--num-hidden-layers", "2"])
    main(["init", "chinese-electra-base", "--output", str(home / "chinese-electra-base"), "--num-hidden-layers", "1"])
    return str(home)


@pytest.fixture(scope="module")
def installed(electra_home):
    """`hub install <dir> <dir>` (offline), into the temporary HUB_HOME."""
    out = subprocess.run([os.path.join(os.path.dirname(PY), "hub"), "install", *MODULES.values()],
                         env=_env(electra_home), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    import paddlehub.module.manager as mgr
    mp = pytest.MonkeyPatch()
    if os.path.dirname(mgr.MODULE_HOME) != _HUB_HOME:  # paddlehub was imported earlier with another home
        mp.setattr(mgr, "MODULE_HOME", os.path.join(_HUB_HOME, "modules"))
        mp.setattr(mgr, "TMP_HOME", os.path.join(_HUB_HOME, "tmp"))
    yield {name: os.path.join(_HUB_HOME, "modules", name.replace("-", "_")) for name in MODULES}
    mp.undo()


@pytest.fixture
def home(monkeypatch, electra_home):
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", electra_home)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never the network
    return electra_home


@pytest.fixture(scope="module")
def load(installed, electra_home):
    """hub.Module(name="chinese-electra-small", **kw), cached per arguments."""
    cache = {}

    def make(**kw):
        key = json.dumps(kw, sort_keys=True, default=str)
        if key not in cache:
            paddle.seed(0)
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PADDLE_ELECTRA_HOME", electra_home)
                cache[key] = hub.Module(name="chinese-electra-small", **kw)
        return cache[key]
    return make


@pytest.fixture(scope="module")
def task_dirs(load, tmp_path_factory):
    """from_pretrained dirs of each task, labelled as the shipped serving configs (random heads)."""
    root = tmp_path_factory.mktemp("task_dirs")
    out = {}
    for task, kw in [("seq-cls", {"label_map": {0: "negative", 1: "positive"}}),
                     ("token-cls", {"label_map": dict(enumerate(MSRA_LABELS))}),
                     ("text-matching", {"label_map": {0: "different", 1: "similar"}}),
                     ("reading-comprehension", {})]:
        out[task] = load(task=task, **kw).save_pretrained(str(root / task))
    return out


def _backbone_outputs(home, ids, types):
    from paddle_electra.modeling import ElectraModel
    m = ElectraModel.from_pretrained(os.path.join(home, "chinese-electra-small"))
    m.eval()
    with paddle.no_grad():
        return m(paddle.to_tensor([ids]), paddle.to_tensor([types])).numpy()[0]


# --- install, metadata, loading -------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(MODULES))
def test_moduleinfo_matches_the_registry(name, installed):
    from paddle_electra.config import get_variant
    info = hub.Module.load_module_info(MODULES[name])
    assert info.name == name and info.type == "nlp/semantic_model" and info.version
    c = get_variant(name).discriminator
    for fact in (f"{c.num_hidden_layers}-layer", f"{c.hidden_size}-hidden", f"{c.num_attention_heads}-heads",
                 f"{c.num_parameters() / 1e6:.1f}M parameters"):
        assert fact in info.summary
    assert os.path.exists(os.path.join(installed[name], "module.py"))


def test_load_by_name_and_directory(installed, home):
    base = hub.Module(name="chinese-electra-base", use_fast_path=False)  # no graph export of base here
    assert base.name == "chinese-electra-base" and base.config.hidden_size == 768
    emb = base.get_embedding([["你好"]])
    assert len(emb[0][0]) == 768 and len(emb[0][1]) == 4
    by_dir = hub.Module(directory=MODULES["chinese-electra-small"], task="seq-cls", num_classes=3)
    assert by_dir.name == "chinese-electra-small" and by_dir.labels == ["0", "1", "2"]
    assert by_dir.label_map == {0: "0", 1: "1", 2: "2"}


def test_constructor_errors(installed, home, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.pdparams"):
        hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=str(tmp_path / "nope.pdparams"))
    with pytest.raises(ValueError, match="unknown task"):
        hub.Module(name="chinese-electra-small", task="ner")
    with pytest.raises(TypeError, match="unknown argument"):
        hub.Module(name="chinese-electra-small", task="seq-cls", num_label=3)
    with pytest.raises(ValueError, match="label_map"):
        hub.Module(name="chinese-electra-small", label_map={0: "a"})
    with pytest.raises(ValueError, match="label_map"):
        hub.Module(name="chinese-electra-small", task="seq-cls", label_map={0: "a", 2: "b"})
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="paddle-electra convert"):
        hub.Module(name="chinese-electra-small")


# --- embeddings -----------------------------------------------------------------------------------
def test_embeddings_unpadded_pooled_and_equal_to_the_library(load, home):
    m = load()
    data = [["今天天气不错"], ["你好", "世界和平"], ["ELECTRA模型"]]
    before = copy.deepcopy(data)
    ids = m.tokenizer([d[0] for d in data[:1]])["input_ids"][0]
    cls = m.get_embedding(data, batch_size=3)
    mean = m.get_embedding(data, pooling="mean", batch_size=1)
    assert data == before  # input not mutated
    ref = _backbone_outputs(home, ids, [0] * len(ids))
    assert np.asarray(cls[0][1]).shape == ref.shape  # one row per real token, no padding rows
    np.testing.assert_allclose(np.asarray(cls[0][1]), ref, atol=1e-4)
    for (pc, tc), (pm, tm) in zip(cls, mean):
        np.testing.assert_allclose(pc, tc[0], atol=1e-6)
        np.testing.assert_allclose(pm, np.mean(tm, axis=0), atol=1e-5)
        np.testing.assert_allclose(tc, tm, atol=1e-4)  # batch of 3 (length-grouped) == one by one
    enc = m.tokenizer("你好", "世界和平")
    assert len(cls[1][1]) == len(enc["input_ids"])
    ref_pair = _backbone_outputs(home, enc["input_ids"], enc["token_type_ids"])
    np.testing.assert_allclose(np.asarray(cls[1][1]), ref_pair, atol=1e-4)
    assert m.predict(data[:1])[0][0] == pytest.approx(cls[0][0], abs=1e-5)  # task None: predict = embeddings
    with pytest.raises(ValueError, match="pooling"):
        m.get_embedding(data, pooling="max")


@pytest.mark.parametrize("bad, match", [
    ("今天", "must be a list"), ([], "empty"), (["今天"], "is a string"), ([["a", "b", "c"]], "1 or 2"),
    ([[1]], "must be a string"), ([[" "]], "empty"),
    ([["好", "坏\ud800了"]], r"data\[0\]\[1\] is not valid Unicode: lone surrogate U\+D800 at character 1"),
])
def test_predict_rejects_bad_input(load, bad, match):
    with pytest.raises((TypeError, ValueError), match=match):
        load(task="seq-cls").predict(bad)


def test_get_tokenizer_is_paddlenlp_and_splits_as_the_original(load):
    from paddlenlp.transformers import PretrainedTokenizer
    m = load()
    tok = m.get_tokenizer()
    assert isinstance(tok, PretrainedTokenizer)  # what PaddleHub's datasets accept
    text = "温度25℃，iPhone12发布了！"
    enc = tok(text=text, max_seq_len=32, pad_to_max_seq_len=True, return_length=True)
    ours = m.tokenizer(text)["input_ids"]
    assert enc["input_ids"][:len(ours)] == ours and set(enc["input_ids"][len(ours):]) <= {0}


# --- classification, tagging, matching, reading comprehension ---------------------------------------
def test_seq_cls_labels_probs_truncation_and_reload(load, home, tmp_path, caplog):
    m = load(task="seq-cls", label_map={0: "negative", 1: "positive"})
    data = [["这个宾馆比较陈旧了，特价的房间也很一般。"], ["房间很整洁，服务很好。" * 40], ["不错"]]
    before = copy.deepcopy(data)
    with caplog.at_level("WARNING", logger="paddle_electra.hub"):
        labels, probs = m.predict(data, max_seq_len=32, batch_size=2, return_prob=True)
        m.predict(data, max_seq_len=32)
    assert sum("truncated" in r.message for r in caplog.records) == 1  # warned once
    assert data == before
    assert set(labels) <= {"negative", "positive"} and len(labels) == 3
    assert all(abs(sum(p) - 1) < 1e-5 for p in probs)
    one_by_one = m.predict(data, max_seq_len=32, batch_size=1, return_prob=True)[1]
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)
    # a long text: max_seq_len changes the answer only through truncation
    long_probs = m.predict(data[1:2], max_seq_len=128, return_prob=True)[1]
    assert not np.allclose(long_probs, probs[1:2], atol=1e-6)
    # reload: a from_pretrained dir keeps the label map; a PaddleHub .pdparams needs the same classes
    m.save_pretrained(str(tmp_path / "dir"))
    again = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=str(tmp_path / "dir"),
                       use_fast_path=False)
    assert again.labels == ["negative", "positive"]
    np.testing.assert_allclose(again.predict(data, max_seq_len=32, return_prob=True)[1], probs, atol=1e-5)
    paddle.save(m.state_dict(), str(tmp_path / "model.pdparams"))
    pd = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=str(tmp_path / "model.pdparams"),
                    use_fast_path=False)
    np.testing.assert_allclose(pd.predict(data, max_seq_len=32, return_prob=True)[1], probs, atol=1e-5)
    from paddle_electra.io import CheckpointError
    with pytest.raises(CheckpointError, match="num_classes"):
        hub.Module(name="chinese-electra-small", task="seq-cls", num_classes=3,
                   load_checkpoint=str(tmp_path / "model.pdparams"))


def test_token_cls_one_label_per_character_and_sliding_windows(load, task_dirs, home):
    m = hub.Module(name="chinese-electra-small", task="token-cls", load_checkpoint=task_dirs["token-cls"])
    assert m.labels == MSRA_LABELS  # from the dir
    text = "华裔作家韩素音女士曾三次到大足，称大足石窟是一座未被开发的金矿。"
    data = [[text], ["\002".join(text)], ["张三 去了 iPhone12 发布会"]]
    before = copy.deepcopy(data)
    labels, probs = m.predict(data, max_seq_len=128, return_prob=True)
    assert data == before
    assert len(labels[0]) == len(text) and labels[0] == labels[1]  # per char == per \002 token here
    assert len(labels[2]) == len(data[2][0]) and labels[2][2] == "O"  # a space: no token, outside
    assert set(labels[0]) <= set(MSRA_LABELS) and len(probs[0][0]) == len(MSRA_LABELS)
    # against the model itself: no [CLS] / padding labels, aligned
    ids = m.tokenizer(text)["input_ids"]
    with paddle.no_grad():
        logits = m.model(paddle.to_tensor([ids])).numpy()[0]
    assert labels[0] == [MSRA_LABELS[i] for i in logits[1:-1].argmax(-1)]
    # longer than max_seq_len: windows; the first tokens' labels come from the first window
    long = text * 6
    win = 32
    got = m.predict([[long]], max_seq_len=win)[0]
    assert len(got) == len(long)
    first_window = m.predict([[long[:win - 2]]], max_seq_len=win)[0]
    stride = (win - 2) // 2
    assert got[:stride] == first_window[:stride]


def test_text_matching_pairs_and_paddlehub_siamese_batches(load, task_dirs):
    m = hub.Module(name="chinese-electra-small", task="text-matching", load_checkpoint=task_dirs["text-matching"])
    data = [["今天天气怎么样", "今天天气如何"], ["我想买手机", "明天会下雨吗"]]
    labels, probs = m.predict(data, return_prob=True)
    assert set(labels) <= {"different", "similar"}
    # PaddleHub's LCQMC layout encodes the texts apart; the module joins them into the same pair
    tok = m.get_tokenizer()
    q = [tok(text=a, max_seq_len=16, pad_to_max_seq_len=True) for a, _ in data]
    t = [tok(text=b, max_seq_len=16, pad_to_max_seq_len=True) for _, b in data]
    as_tensor = lambda rows, k: paddle.to_tensor(np.array([r[k] for r in rows], dtype="int64"))
    with paddle.no_grad():
        hub_probs = m(query_input_ids=as_tensor(q, "input_ids"), query_token_type_ids=as_tensor(q, "token_type_ids"),
                      title_input_ids=as_tensor(t, "input_ids"), title_token_type_ids=as_tensor(t, "token_type_ids"))
    np.testing.assert_allclose(hub_probs.numpy(), probs, atol=1e-5)
    with pytest.raises(ValueError, match="2 text"):
        m.predict([["只有一句"]])


def test_join_pairs_truncates_as_the_tokenizer_second_text_on_ties(load):
    """PaddleHub's siamese text-matching batches are joined and cut by the original's rule, the same
    pair the tokenizer (and so fine-tuning and predict) makes: the second text loses on ties."""
    from paddle_electra.hub import join_pairs
    m = load()
    tok = m.tokenizer
    for a, b, max_len in [("今天天气", "明天下雨", 9), ("今天天气很好", "明天", 8), ("今天", "明天下雨了吗", 7),
                          ("今天天气", "明天下雨", 6)]:
        q, t = tok(a, padding=False)["input_ids"], tok(b, padding=False)["input_ids"]
        width = max(len(q), len(t)) + 2
        padded = lambda ids: np.array([ids + [0] * (width - len(ids))])
        ids, types = join_pairs(padded(q), padded(t), 0, max_len)
        want = tok(a, b, max_length=max_len, truncation=True)
        n = len(want["input_ids"])
        assert ids[0][:n].tolist() == want["input_ids"] and types[0][:n].tolist() == want["token_type_ids"], (a, b)
        assert not ids[0][n:].any()


def test_fast_path_follows_set_state_dict(installed, home, task_dirs):
    """The fast path runs an exported copy of the weights: new weights through set_state_dict (or its
    aliases) must not leave predictions coming from the old graph."""
    data = [["这个宾馆比较陈旧了"], ["服务很好，房间整洁"]]
    m = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=task_dirs["seq-cls"])
    before = m.predict(data, return_prob=True)[1]
    assert m._predictor is not None
    paddle.seed(5)
    other = hub.Module(name="chinese-electra-small", task="seq-cls", label_map={0: "negative", 1: "positive"},
                       use_fast_path=False)
    want = other.predict(data, return_prob=True)[1]
    assert not np.allclose(want, before, atol=1e-3)  # another head: other answers
    m.set_state_dict(other.state_dict())
    np.testing.assert_allclose(m.predict(data, return_prob=True)[1], want, atol=1e-4)
    assert m._predictor is not None  # the fast path ran, on a fresh export
    original = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=task_dirs["seq-cls"],
                          use_fast_path=False)
    m.set_dict(original.state_dict())  # nn.Layer's alias
    np.testing.assert_allclose(m.predict(data, return_prob=True)[1], before, atol=1e-4)


def test_reading_comprehension_answers_are_slices(load, task_dirs):
    m = hub.Module(name="chinese-electra-small", task="reading-comprehension",
                   load_checkpoint=task_dirs["reading-comprehension"])
    data = [[CONTEXT, "《红楼梦》的作者是谁？"], [CONTEXT * 4, "小说的主线是什么？"]]
    before = copy.deepcopy(data)
    out = m.predict(data, max_seq_len=64, batch_size=4)
    assert data == before
    for (context, _), r in zip(data, out):
        assert set(r) == {"answer", "start", "end", "score"}
        assert context[r["start"]:r["end"]] == r["answer"] and 0 <= r["score"] <= 1
        assert r["answer"] and len(m.tokenizer.tokenize(r["answer"])) <= 30  # the original's max answer length
    # batching does not change answers: spans exactly, scores within float noise (batch shapes change
    # the GEMM blocking, so the last bits differ between CPUs)
    one_by_one = m.predict(data, max_seq_len=64, batch_size=1)
    assert [(r["answer"], r["start"], r["end"]) for r in one_by_one] == [(r["answer"], r["start"], r["end"]) for r in out]
    np.testing.assert_allclose([r["score"] for r in one_by_one], [r["score"] for r in out], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="max_seq_len"):
        m.predict([[CONTEXT, "问" * 80]], max_seq_len=40)


def test_text_regression_through_the_hub_module(installed, home, tmp_path):
    """The worked example's task (docs/design.md): fine-tuned by paddle_electra.finetuning from the
    module's own weights, then served by hub.Module with no hub code of its own; the fast path, the
    layer itself and ElectraPredictor give the same scores."""
    from paddle_electra.finetuning.config import FinetuneConfig
    from paddle_electra.finetuning.trainer import run_finetuning
    from paddle_electra.inference import ElectraPredictor
    pairs = [(f"今天{c}怎么样", b.format(c), score) for c in "甲乙丙丁"
             for b, score in [("好好好{}很好", 5.0), ("坏坏坏{}太坏", 0.0)]]
    (tmp_path / "finetuning_data" / "sts").mkdir(parents=True)
    (tmp_path / "finetuning_data" / "sts" / "train.tsv").write_text(
        "".join(f"{a}\t{b}\t{s}\n" for a, b, s in pairs), encoding="utf-8")
    run_finetuning(FinetuneConfig(task_names=["sts"], data_dir=str(tmp_path), do_eval=False, device="cpu",
                                  model_name=os.path.join(home, "chinese-electra-small"), num_train_epochs=2,
                                  max_seq_length=24, train_batch_size=4))
    model_dir = str(tmp_path / "finetuning_models" / "sts_model_1")
    fast = hub.Module(name="chinese-electra-small", task="text-regression", load_checkpoint=model_dir)
    slow = hub.Module(name="chinese-electra-small", task="text-regression", load_checkpoint=model_dir,
                      use_fast_path=False)
    data = [[a, b] for a, b, _ in pairs]
    scores = fast.predict(data, max_seq_len=24, batch_size=3)
    assert len(scores) == len(data) and all(isinstance(x, float) for x in scores) and fast._predictor is not None
    np.testing.assert_allclose(scores, slow.predict(data, max_seq_len=24), atol=1e-4)
    ref = ElectraPredictor.from_pretrained(model_dir, task="text-regression").predict_texts(
        [a for a, _ in data], [b for _, b in data], max_seq_length=24)
    np.testing.assert_allclose(scores, [r[0] for r in ref], atol=1e-4)
    assert slow.predict(data[:2], max_seq_len=24, return_prob=True)[1] == [None, None]  # a score has no probabilities
    with pytest.raises(ValueError, match="label_map is for"):
        hub.Module(name="chinese-electra-small", task="text-regression", label_map={0: "a"})
    with pytest.raises(ValueError, match="1 or 2 text"):
        slow.predict([["a", "b", "c"]])


def test_fast_path_equals_dygraph(load, task_dirs, home):
    pytest.importorskip("paddle_electra.inference")
    data = {None: [["今天是个好日子"], ["天气预报", "说今天要下雨了"]],
            "seq-cls": [["这个宾馆比较陈旧了"], ["服务很好，房间整洁"]],
            "text-matching": [["今天天气怎么样", "今天天气如何"], ["我想买手机", "明天会下雨吗"]],
            "token-cls": [["华裔作家韩素音女士曾三次到大足"], ["张三 去了 iPhone12 发布会"]],
            "reading-comprehension": [[CONTEXT, "《红楼梦》的作者是谁？"], [CONTEXT * 3, "小说的主线是什么？"]]}
    for task, examples in data.items():
        kw = {"load_checkpoint": task_dirs[task]} if task else {}
        fast = hub.Module(name="chinese-electra-small", task=task, **kw)
        slow = hub.Module(name="chinese-electra-small", task=task, use_fast_path=False, **kw)
        if task is None:
            a, b = fast.get_embedding(examples, batch_size=2), slow.get_embedding(examples, batch_size=2)
            for (pa, ta), (pb, tb) in zip(a, b):
                np.testing.assert_allclose(pa, pb, atol=1e-4)
                np.testing.assert_allclose(ta, tb, atol=1e-4)
        elif task == "reading-comprehension":
            a, b = fast.predict(examples, max_seq_len=64, batch_size=2), slow.predict(examples, max_seq_len=64, batch_size=2)
            assert [(x["start"], x["end"]) for x in a] == [(x["start"], x["end"]) for x in b]
            np.testing.assert_allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
        else:
            a = fast.predict(examples, batch_size=2, return_prob=True)
            b = slow.predict(examples, batch_size=2, return_prob=True)
            assert a[0] == b[0], task
            pa = [p for p in a[1] if p is not None] if task != "token-cls" else \
                [q for row in a[1] for q in row if q is not None]
            pb = [p for p in b[1] if p is not None] if task != "token-cls" else \
                [q for row in b[1] for q in row if q is not None]
            np.testing.assert_allclose(pa, pb, atol=1e-4)
        assert fast._predictor is not None and slow._predictor is None, task  # each ran the path it says


def test_fast_path_runs_the_engine_asked_for(load, task_dirs, home):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra has it)")
    pytest.importorskip("paddle2onnx", reason="paddle2onnx is not installed (paddlehub brings it)")
    examples = [["这个宾馆比较陈旧了"], ["服务很好，房间整洁"]]
    fast = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=task_dirs["seq-cls"],
                      engine="onnxruntime")
    slow = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=task_dirs["seq-cls"],
                      use_fast_path=False)
    a = fast.predict(examples, batch_size=2, return_prob=True)
    b = slow.predict(examples, batch_size=2, return_prob=True)
    assert a[0] == b[0]
    np.testing.assert_allclose(a[1], b[1], atol=1e-4)
    assert fast._predictor.engine == "onnxruntime"


# --- fine-tuning with hub.Trainer ------------------------------------------------------------------
def _write_tsv(path, header, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(r) + "\n")


def _msra_sentences(path, n):
    out, chars, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                if chars:
                    out.append(("\002".join(chars), "\002".join(tags)))
                    chars, tags = [], []
                if len(out) == n:
                    break
                continue
            c, t = line.split()
            chars.append(c)
            tags.append(t)
    return out


def test_hub_trainer_seq_cls_saves_and_reloads(installed, home, shared_data, tmp_path):
    from paddlehub.datasets.base_nlp_dataset import TextClassificationDataset
    with open(os.path.join(shared_data, "chnsenticorp", "train.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:25]
    _write_tsv(tmp_path / "train.tsv", ["label", "text_a"], rows[:16])
    _write_tsv(tmp_path / "dev.tsv", ["label", "text_a"], rows[16:])
    paddle.seed(1)
    model = hub.Module(name="chinese-electra-small", task="seq-cls", num_classes=2, use_fast_path=False)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    # ChnSentiCorp's own layout and class (it is TextClassificationDataset on files like these)
    ds = {mode: TextClassificationDataset(base_path=str(tmp_path), tokenizer=model.get_tokenizer(), max_seq_len=64,
                                          mode=mode, data_file=f"{mode}.tsv", label_list=["0", "1"],
                                          is_file_with_header=True) for mode in ("train", "dev")}
    opt = paddle.optimizer.AdamW(learning_rate=1e-3, parameters=model.parameters())
    trainer = hub.Trainer(model, opt, checkpoint_dir=str(tmp_path / "ckpt"), use_gpu=False)
    trainer.train(ds["train"], epochs=1, batch_size=8, eval_dataset=ds["dev"], save_interval=1, log_interval=1)
    result = trainer.evaluate(ds["dev"], batch_size=8)
    assert 0 <= result["metrics"]["acc"] <= 1 and np.isfinite(result["loss"])
    changed = [k for k, v in model.state_dict().items() if not np.array_equal(v.numpy(), before[k])]
    assert any(k.startswith("model.classifier") for k in changed) and any("encoder" in k for k in changed)
    saved = tmp_path / "ckpt" / "epoch_1" / "model.pdparams"
    assert saved.exists() and (tmp_path / "ckpt" / "best_model" / "model.pdparams").exists()
    texts = [[r[1]] for r in rows[16:]]
    want = model.predict(texts, max_seq_len=64, return_prob=True)
    again = hub.Module(name="chinese-electra-small", task="seq-cls", load_checkpoint=str(saved), use_fast_path=False)
    got = again.predict(texts, max_seq_len=64, return_prob=True)
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)


def test_hub_trainer_token_cls_and_text_matching(installed, home, shared_data, tmp_path):
    from paddlehub.datasets.base_nlp_dataset import SeqLabelingDataset, TextMatchingDataset
    # MSRA_NER's layout: text_a and label, characters and tags joined by \002
    sents = _msra_sentences(os.path.join(shared_data, "msra_ner", "train.txt"), 12)
    _write_tsv(tmp_path / "ner.tsv", ["text_a", "label"], sents)
    tagger = hub.Module(name="chinese-electra-small", task="token-cls", label_map=dict(enumerate(MSRA_LABELS)),
                        use_fast_path=False)
    ner = SeqLabelingDataset(base_path=str(tmp_path), tokenizer=tagger.get_tokenizer(), max_seq_len=48,
                             data_file="ner.tsv", label_list=MSRA_LABELS, is_file_with_header=True)
    trainer = hub.Trainer(tagger, paddle.optimizer.AdamW(learning_rate=1e-3, parameters=tagger.parameters()),
                          checkpoint_dir=str(tmp_path / "ner_ckpt"), use_vdl=False)
    trainer.train(ner, epochs=1, batch_size=4, log_interval=1)
    res = trainer.evaluate(ner, batch_size=4)
    assert 0 <= res["metrics"]["f1_score"] <= 1 and np.isfinite(res["loss"])
    text = sents[0][0].replace("\002", "")
    assert len(tagger.predict([[text]])[0]) == len(text)
    # LCQMC's layout (query and title apart); XNLI pairs stand in for LCQMC, 3 classes
    with open(os.path.join(shared_data, "xnli", "dev.tsv"), encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f][1:13]
    _write_tsv(tmp_path / "pairs.tsv", ["text_a", "text_b", "label"], pairs)
    names = ["entailment", "neutral", "contradiction"]
    matcher = hub.Module(name="chinese-electra-small", task="text-matching", label_map=dict(enumerate(names)),
                         use_fast_path=False)
    tm = TextMatchingDataset(base_path=str(tmp_path), tokenizer=matcher.get_tokenizer(), max_seq_len=48,
                             data_file="pairs.tsv", label_list=names, is_file_with_header=True)
    trainer = hub.Trainer(matcher, paddle.optimizer.AdamW(learning_rate=1e-3, parameters=matcher.parameters()),
                          checkpoint_dir=str(tmp_path / "tm_ckpt"), use_vdl=False)
    trainer.train(tm, epochs=1, batch_size=4, log_interval=1)
    assert 0 <= trainer.evaluate(tm, batch_size=4)["metrics"]["acc"] <= 1
    assert set(matcher.predict([pairs[0][:2]])) <= set(names)


def test_hub_trainer_reading_comprehension(installed, home, shared_data, tmp_path):
    from paddle_electra.hub import ReadingComprehensionDataset
    with open(os.path.join(shared_data, "cmrc2018", "trial.json"), encoding="utf-8") as f:
        squad = json.load(f)
    para = squad["data"][0]["paragraphs"][0]
    sample = {"data": [{"paragraphs": [{"context": para["context"], "qas": para["qas"][:3]}]}]}
    reader = hub.Module(name="chinese-electra-small", task="reading-comprehension", use_fast_path=False)
    ds = ReadingComprehensionDataset(sample, reader.get_tokenizer(), max_seq_len=128, doc_stride=64)
    assert len(ds) >= 3 and any(int(r[2]) > 0 for r in ds.records)
    trainer = hub.Trainer(reader, paddle.optimizer.AdamW(learning_rate=1e-3, parameters=reader.parameters()),
                          checkpoint_dir=str(tmp_path / "rc_ckpt"), use_vdl=False)
    trainer.train(ds, epochs=1, batch_size=4, log_interval=1)
    res = trainer.evaluate(ds, batch_size=4)
    assert np.isfinite(res["loss"]) and 0 <= res["metrics"]["span_acc"] <= 1
    q = para["qas"][0]["question"]
    ans = reader.predict([[para["context"], q]], max_seq_len=128)[0]
    assert para["context"][ans["start"]:ans["end"]] == ans["answer"]


def test_reading_comprehension_requests_are_bounded_in_windows(load, home):
    """issue 23 item 1: one request with huge contexts held the module for minutes."""
    m = load(task="reading-comprehension", max_serving_texts=8)
    ok = [[CONTEXT, "《红楼梦》的作者是谁？"]]
    assert m.check_request(ok, max_seq_len=128, batch_size=4)[0] == ok
    with pytest.raises(ValueError, match=r"need up to \d+ windows of max_seq_len=64 \(doc stride 16\); at most 8"):
        m.check_request([["长" * 2000, "问题？"]], max_seq_len=64, batch_size=4)

"""Fine-tuning: task readers, QA features and answer mapping, heads and their loading rules, layerwise
learning rates, the CMRC 2018 / DRCD scorer on hand-computed cases, and a tiny end-to-end run of
each task family (classification, tagging, QA)."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_electra.io import CheckpointError
from paddle_electra.config import ElectraConfig, generator_config_for
from paddle_electra.tasks import metrics
from paddle_electra.finetuning.config import FinetuneConfig, HparamsError
from paddle_electra.tasks.qa import (AnswerNotFound, doc_spans, featurize_qa, max_context_flags,
                                     postprocess_qa)
from paddle_electra.finetuning.tasks import DataError, get_task, truncate_pair
from paddle_electra.heads import (ElectraForQuestionAnswering, ElectraForSequenceClassification,
                                  ElectraForTokenClassification, answer_mask_from)
from paddle_electra.modeling import ElectraForPreTraining, ElectraModel
from paddle_electra.optimization import create_optimizer
from paddle_electra.tokenizer import ElectraTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128, embedding_size=32)


@pytest.fixture(scope="module")
def tok():
    return ElectraTokenizer()


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory):
    paddle.seed(0)
    cfg = ElectraConfig(**TINY)
    path = str(tmp_path_factory.mktemp("pre") / "tiny")
    ElectraForPreTraining(cfg, generator_config_for(cfg, 32)).save_pretrained(path)
    return path


def make_task(name, data_dir, **kw):
    cfg = FinetuneConfig(task_names=[name], data_dir=str(data_dir), **kw)
    return get_task(name, cfg, ElectraTokenizer())


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# --- readers ---------------------------------------------------------------------------------------
def test_chnsenticorp_reader(tmp_path):
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", "label\ttext_a\n1\t很好\n0\t太差了\n")
    ex = make_task("chnsenticorp", tmp_path).get_examples("train")
    assert [(e.text_a, e.text_b, e.label) for e in ex] == [("很好", None, "1"), ("太差了", None, "0")]


def test_pair_reader_with_and_without_header(tmp_path):
    write(tmp_path / "finetuning_data/lcqmc/train.tsv", "text_a\ttext_b\tlabel\n你好\t您好\t1\n")
    write(tmp_path / "finetuning_data/lcqmc/dev.tsv", "今天\t明天\t0\n")
    t = make_task("lcqmc", tmp_path)
    assert [(e.text_a, e.text_b, e.label) for e in t.get_examples("train")] == [("你好", "您好", "1")]
    assert [(e.text_a, e.text_b, e.label) for e in t.get_examples("dev")] == [("今天", "明天", "0")]
    write(tmp_path / "finetuning_data/bqcorpus/train.tsv", "a\tb\t2\n")
    with pytest.raises(DataError, match=r"train.tsv: line 1: label '2'"):
        make_task("bqcorpus", tmp_path).get_examples("train")


def test_xnli_reads_tsv_and_ocnli_json_lines(tmp_path):
    write(tmp_path / "finetuning_data/xnli/dev.tsv", "text_a\ttext_b\tlabel\n甲\t乙\tcontradictory\n丙\t丁\tneutral\n")
    rows = [{"sentence1": "前提", "sentence2": "假设", "label": "entailment"},
            {"sentence1": "x", "sentence2": "y", "label": "-"},
            {"sentence1": "前", "sentence2": "后", "label": "contradiction"}]
    write(tmp_path / "finetuning_data/xnli/train.json", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    t = make_task("xnli", tmp_path)
    assert [e.label for e in t.get_examples("dev")] == ["contradiction", "neutral"]
    train = t.get_examples("train")
    assert [(e.text_a, e.label) for e in train] == [("前提", "entailment"), ("前", "contradiction")]  # "-" skipped
    feats = t.featurize(train, True)
    assert [f.label for f in feats] == [1, 0]  # HFL's label order


def test_cail_reader_learns_labels_from_train(tmp_path):
    rows = [{"fact": "盗窃财物", "meta": {"accusation": ["盗窃"]}},
            {"fact": "故意伤害他人", "meta": {"accusation": ["故意伤害", "寻衅滋事"]}}]
    write(tmp_path / "finetuning_data/cail/train.json", "\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    write(tmp_path / "finetuning_data/cail/dev.json", json.dumps({"fact": "诈骗", "meta": {"accusation": ["诈骗"]}}))
    t = make_task("cail", tmp_path)
    assert [e.label for e in t.get_examples("train")] == ["盗窃", "故意伤害"]
    assert t.model_kwargs() == {"id2label": ["故意伤害", "盗窃"]}
    with pytest.raises(DataError, match="does not occur in the training data"):
        t.get_examples("dev")


def test_msra_ner_reader_both_formats(tmp_path):
    write(tmp_path / "finetuning_data/msra_ner/train.txt", "中 B-ORG\n共 I-ORG\n好 O\n\n我 O\n")
    write(tmp_path / "finetuning_data/msra_ner/dev.tsv", "北京\x02大学\tB-ORG\x02I-ORG\n")
    t = make_task("msra_ner", tmp_path)
    assert [(e.words, e.tags) for e in t.get_examples("train")] == [
        (["中", "共", "好"], ["B-ORG", "I-ORG", "O"]), (["我"], ["O"])]
    assert [(e.words, e.tags) for e in t.get_examples("dev")] == [(["北京", "大学"], ["B-ORG", "I-ORG"])]
    # a word of several pieces: the first carries the label, the rest are ignored
    f = t.featurize(t.get_examples("dev"), True)[0]
    assert f.labels[0] == -100 and f.labels[f.first[0] - f.start + 1] == 5 and f.labels[-1] == -100
    assert f.labels[f.first[0] - f.start + 2] == -100  # the second piece of 北京
    write(tmp_path / "finetuning_data/msra_ner/test.txt", "中 B-XXX\n")
    with pytest.raises(DataError, match=r"test.txt: line 1: tag 'B-XXX'"):
        t.get_examples("test")


def test_squad_reader_and_missing_file(tmp_path):
    data = {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [
        {"id": " Q1 ", "question": "哪里大？", "answers": [{"text": "上海", "answer_start": 0}]}]}]}]}
    write(tmp_path / "finetuning_data/cmrc2018/train.json", json.dumps(data, ensure_ascii=False))
    t = make_task("cmrc2018", tmp_path)
    ex = t.get_examples("train")
    assert ex[0].qid == "Q1" and ex[0].answers[0]["text"] == "上海"
    with pytest.raises(DataError, match=r"no dev file for task cmrc2018"):
        t.get_examples("dev")


def write_bytes(path, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


SQUAD_Q = {"id": "Q1", "question": "哪里大？", "answers": [{"text": "上海", "answer_start": 0}]}


@pytest.mark.parametrize("task, name, content, match", [
    ("chnsenticorp", "train.tsv", "label\ttext_a\n1\t很好\n0\t坏\xff了\n".encode("utf-8").replace(b"\xc3\xbf", b"\xff"),
     r"train.tsv: line 3: not UTF-8 \(byte 0xff"),
    ("xnli", "train.json", '{"sentence1": "a", "sentence2": "b", "label": "neutral"}\n[1, 2]\n',
     r"train.json: line 2: expected a JSON object, got list"),
    ("cail", "train.json", '"盗窃"\n', r"train.json: line 1: expected a JSON object, got str"),
    ("cail", "train.json", '{"meta": {"accusation": ["盗窃"]}}\n', r"line 1: field 'fact' must be a text, got nothing"),
    ("cmrc2018", "train.json", {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [
        {**SQUAD_Q, "answers": [{"text": "上海", "answer_start": "abc"}]}]}]}]},
     r"train.json: data\[0\].paragraphs\[0\].qas\[0\].answers\[0\]: field 'answer_start' must be an integer "
     r"character offset, got 'abc'"),
    ("cmrc2018", "train.json", {"data": [{"title": "x"}]}, r"train.json: data\[0\]: field 'paragraphs' is missing"),
    ("cmrc2018", "train.json", {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [{"id": "Q1", "answers": []}]}]}]},
     r"data\[0\].paragraphs\[0\].qas\[0\]: field 'question' must be a text, got nothing"),
    ("cmrc2018", "train.json", {"data": [{"paragraphs": [{"context": None, "qas": [SQUAD_Q]}]}]},
     r"data\[0\].paragraphs\[0\]: field 'context' must be a text, got nothing"),
    ("chnsenticorp", "train.tsv", "label\ttext_a\n1\t很好\n0\t  \n", r"train.tsv: line 3: field 'text_a' is empty"),
    ("lcqmc", "train.tsv", "你好\t\t1\n", r"train.tsv: line 1: field 'text_b' is empty"),
    ("msra_ner", "train.tsv", "\tO\n", r"train.tsv: line 1: field 'text' is empty"),
    ("chnsenticorp", "train.tsv", "label\ttext_a\n", r"train.tsv: holds no examples \(task chnsenticorp, train split\)"),
    ("cmrc2018", "train.json", {"data": []}, r"train.json: holds no examples"),
])
def test_reader_errors_name_file_line_and_field(tmp_path, task, name, content, match):
    path = tmp_path / "finetuning_data" / task / name
    if isinstance(content, dict):
        content = json.dumps(content, ensure_ascii=False)
    write_bytes(path, content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError, match=match):
        make_task(task, tmp_path).get_examples("train")


def test_readers_strip_a_byte_order_mark(tmp_path):
    bom = "\ufeff"
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", bom + "label\ttext_a\n1\t很好\n")  # header still found
    assert [(e.text_a, e.label) for e in make_task("chnsenticorp", tmp_path).get_examples("train")] == [("很好", "1")]
    write(tmp_path / "finetuning_data/lcqmc/train.tsv", bom + "你好\t您好\t1\n")  # not stuck to the first text
    assert [e.text_a for e in make_task("lcqmc", tmp_path).get_examples("train")] == ["你好"]
    rows = [{"sentence1": "前提", "sentence2": "假设", "label": "entailment"}]
    write(tmp_path / "finetuning_data/xnli/train.json", bom + json.dumps(rows[0], ensure_ascii=False) + "\n")
    assert [e.text_a for e in make_task("xnli", tmp_path).get_examples("train")] == ["前提"]
    data = {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [SQUAD_Q]}]}]}
    write(tmp_path / "finetuning_data/cmrc2018/train.json", bom + json.dumps(data, ensure_ascii=False))
    assert [e.qid for e in make_task("cmrc2018", tmp_path).get_examples("train")] == ["Q1"]
    write(tmp_path / "finetuning_data/msra_ner/train.txt", bom + "中 B-ORG\n")
    assert make_task("msra_ner", tmp_path).get_examples("train")[0].words == ["中"]


def test_squad_question_without_text_is_skipped_with_a_warning(tmp_path, caplog):
    data = {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [SQUAD_Q, {**SQUAD_Q, "id": "Q2", "question": " "}]}]}]}
    write(tmp_path / "finetuning_data/cmrc2018/train.json", json.dumps(data, ensure_ascii=False))
    with caplog.at_level("WARNING"):
        ex = make_task("cmrc2018", tmp_path).get_examples("train")
    assert [e.qid for e in ex] == ["Q1"]
    assert any("data[0].paragraphs[0].qas[1]" in r.message and "empty" in r.message for r in caplog.records)


def test_no_training_feature_is_a_data_error(tmp_path, pretrained_dir):
    """Every answer outside its context: no training feature, an error naming the file."""
    data = {"data": [{"paragraphs": [{"context": "上海很大。", "qas": [
        {**SQUAD_Q, "answers": [{"text": "北京", "answer_start": 0}]}]}]}]}
    write(tmp_path / "finetuning_data/cmrc2018/train.json", json.dumps(data, ensure_ascii=False))
    with pytest.raises(DataError, match=r"train.json: none of its 1 examples gave a training feature"):
        _run(tmp_path, pretrained_dir, "cmrc2018", max_seq_length=32, beam_size=5, save_model=False, do_eval=False)


def test_shared_data_readers(shared_data, tmp_path):
    d = os.path.join
    t = make_task("chnsenticorp", tmp_path, train_file=d(shared_data, "chnsenticorp/train.tsv"),
                  dev_file=d(shared_data, "chnsenticorp/dev.tsv"))
    assert len(t.get_examples("train")) == 9600 and len(t.get_examples("dev")) == 1200
    x = make_task("xnli", tmp_path, train_file=d(shared_data, "ocnli/train.10k.json"),
                  dev_file=d(shared_data, "xnli/dev.tsv"))
    assert len(x.get_examples("dev")) == 2490 and len(x.get_examples("train")) == 10000 - 15
    m = make_task("msra_ner", tmp_path, dev_file=d(shared_data, "msra_ner/dev.txt"))
    assert len(m.get_examples("dev")) == 4631
    q = make_task("cmrc2018", tmp_path, dev_file=d(shared_data, "cmrc2018/dev.json"))
    assert len(q.get_examples("dev")) == 3219
    r = make_task("drcd", tmp_path, dev_file=d(shared_data, "drcd/DRCD_dev.json"))
    assert len(r.get_examples("dev")) == 3524


def test_shared_cmrc_answers_map_back(shared_data, tmp_path):
    """Every CMRC 2018 trial answer is labelled at tokens whose characters are the answer text, except
    answers the annotators padded with spaces (or ending in a combining mark the tokenizer drops)."""
    q = make_task("cmrc2018", tmp_path, train_file=os.path.join(shared_data, "cmrc2018/trial.json"),
                  max_seq_length=512)
    examples = q.get_examples("train")
    exact = 0
    for e in examples:
        a = e.answers[0]
        f = next(f for f in featurize_qa(q.tokenizer, e.question, e.context, 512, answer_text=a["text"],
                                         answer_start=a["answer_start"]) if f.start_position)
        got = e.context[f.offsets[f.start_position][0]:f.offsets[f.end_position][1]]
        exact += got == a["text"]
        assert got == a["text"] or a["text"].strip().startswith(got)
    assert exact >= len(examples) - 3


def test_truncate_pair_original_rule():
    assert truncate_pair([1, 2, 3, 4], [5, 6], 4) == ([1, 2], [5, 6])
    assert truncate_pair([1, 2], [5, 6], 3) == ([1, 2], [5])  # equal: the second side loses first


def test_hparams(tmp_path):
    c = FinetuneConfig.load(json.dumps({"task_names": ["cmrc2018"], "model_size": "large"}))
    assert (c.max_seq_length, c.num_train_epochs, c.learning_rate, c.layerwise_lr_decay) == (512, 2.0, 5e-5, 0.9)
    c = FinetuneConfig.load(os.path.join(ROOT, "finetune/params_chnsenticorp.json"))
    assert c.learning_rate == 3e-4 and c.max_seq_length == 256
    with pytest.raises(HparamsError, match="unknown hparam"):
        FinetuneConfig.load('{"task_names": ["xnli"], "learnin_rate": 1}')
    for f in os.listdir(os.path.join(ROOT, "finetune")):
        if f.startswith("params_"):
            cfg = FinetuneConfig.load(os.path.join(ROOT, "finetune", f))
            assert f == f"params_{cfg.task_name}.json"
    assert {f[len("params_"):-5] for f in os.listdir(os.path.join(ROOT, "finetune")) if f.startswith("params_")} == \
        {"chnsenticorp", "xnli", "lcqmc", "bqcorpus", "cail", "msra_ner", "cmrc2018", "drcd"}


# --- QA features and answers -------------------------------------------------------------------------
CTX = "上海是大城市。北京是首都，北京也很大。"


def test_qa_answer_occurring_twice_maps_to_the_gold_one(tok):
    second = CTX.index("北京", CTX.index("北京") + 1)
    feats = featurize_qa(tok, "哪里很大？", CTX, max_seq_length=64, answer_text="北京", answer_start=second)
    f = feats[0]
    s, e = f.offsets[f.start_position], f.offsets[f.end_position]
    assert (s[0], e[1]) == (second, second + 2)
    # and back: outputs pointing at those tokens give the second occurrence's offsets
    out = {"start_logits": np.eye(len(f.input_ids))[f.start_position] * 10,
           "end_logits": np.eye(len(f.input_ids))[f.end_position] * 10}
    best = postprocess_qa([f], [out], CTX)[0]
    assert (best["text"], best["start"], best["end"]) == ("北京", second, second + 2)


def test_qa_windows_and_max_context(tok):
    ctx = "".join(chr(0x4e00 + i) for i in range(50))  # 50 one-character tokens
    answer_start = 41
    feats = featurize_qa(tok, "问", ctx, max_seq_length=24, doc_stride=8, answer_text=ctx[41:44],
                         answer_start=answer_start)
    q_len = 1 + 1 + 1  # [CLS] 问 [SEP]
    assert [len(f.input_ids) for f in feats][0] == 24
    spans = doc_spans(50, 24 - 1 - 3, 8)
    assert spans[0] == (0, 20) and spans[-1][0] + spans[-1][1] == 50
    for f, (start, length) in zip(feats, spans):
        inside = start <= 41 and 43 < start + length
        assert (f.start_position != 0) == inside
        if inside:
            assert f.offsets[f.start_position] == (41, 42) and f.offsets[f.end_position] == (43, 44)
            assert f.start_position == 41 - start + q_len
    # every context token is "max context" in exactly one window
    counts = np.zeros(50, int)
    for si, (start, length) in enumerate(spans):
        for k, flag in enumerate(max_context_flags(spans, si)):
            counts[start + k] += flag
    assert (counts == 1).all()


def test_qa_answer_offsets_fixed_or_rejected(tok):
    f = featurize_qa(tok, "问", CTX, 64, answer_text="首都", answer_start=3)[0]  # offset off: nearest hit
    assert CTX[f.offsets[f.start_position][0]:f.offsets[f.end_position][1]] == "首都"
    with pytest.raises(AnswerNotFound):
        featurize_qa(tok, "问", CTX, 64, answer_text="广州", answer_start=0)


def test_postprocess_rules(tok):
    f = featurize_qa(tok, "哪里？", CTX, max_seq_length=64)[0]
    n = len(f.input_ids)
    first_ctx = f.offsets.index(next(o for o in f.offsets if o))
    # the joint head's beam: start 0 ([CLS]), a question token, an end before the start, a too-long span
    out = {"start_top_index": np.array([0, 1, first_ctx + 5, first_ctx]),
           "start_top_log_probs": np.array([0.0, -0.1, -0.2, -0.3]),
           "end_top_index": np.array([[1, 2], [2, 3], [first_ctx + 1, first_ctx + 6], [first_ctx + 1, first_ctx + 2]]),
           "end_top_log_probs": np.array([[0.0, -1.0], [0.0, -1.0], [0.0, -1.0], [-0.5, -0.1]])}
    nbest = postprocess_qa([f], [out], CTX, max_answer_length=2)
    # valid: (ctx+5, ctx+6) score -1.2, (ctx, ctx+1) -0.8; (ctx, ctx+2) is 3 tokens > 2
    assert [x["text"] for x in nbest] == [CTX[0:2], CTX[5:7]]
    assert abs(sum(x["probability"] for x in nbest) - 1) < 1e-9
    assert postprocess_qa([f], [{"start_logits": np.zeros(n), "end_logits": np.zeros(n)}], CTX, max_answer_length=0
                          )[0]["text"] == ""


# --- heads ------------------------------------------------------------------------------------------------
def test_registry_and_head_loading(pretrained_dir, tmp_path):
    from paddle_electra.tasks import get_spec
    assert get_spec("text-matching").model_class is ElectraForSequenceClassification
    m = ElectraForSequenceClassification.from_pretrained(pretrained_dir, id2label=["neg", "pos", "mid"])
    assert m.load_report.newly_initialized == ["classifier.bias", "classifier.weight"]
    ids = paddle.to_tensor([[101, 872, 1962, 102, 0]])
    m.eval()
    out = m(ids, attention_mask=paddle.to_tensor([[1, 1, 1, 1, 0]]))
    assert out.shape == [1, 3]
    m.save_pretrained(str(tmp_path / "cls"))
    cfg = json.load(open(tmp_path / "cls/config.json"))
    assert cfg["id2label"] == {"0": "neg", "1": "pos", "2": "mid"} and cfg["num_labels"] == 3
    assert json.load(open(tmp_path / "cls/label_map.json")) == {"neg": 0, "pos": 1, "mid": 2}
    m2 = ElectraForSequenceClassification.from_pretrained(str(tmp_path / "cls"))
    m2.eval()
    assert m2.labels == ["neg", "pos", "mid"] and m2.load_report.newly_initialized == []
    np.testing.assert_array_equal(m2(ids, attention_mask=paddle.to_tensor([[1, 1, 1, 1, 0]])).numpy(), out.numpy())
    with pytest.raises(CheckpointError, match="classifier.weight"):
        ElectraForSequenceClassification.from_pretrained(str(tmp_path / "cls"), num_labels=2)
    # another head on a fine-tuned dir: its backbone, a new head
    t = ElectraForTokenClassification.from_pretrained(str(tmp_path / "cls"), num_labels=7)
    assert t.load_report.newly_initialized == ["classifier.bias", "classifier.weight"] and t(ids).shape == [1, 5, 7]
    # the backbone alone loads from the fine-tuned dir too
    assert ElectraModel.from_pretrained(str(tmp_path / "cls"))(ids).shape == [1, 5, 64]


def test_qa_heads(pretrained_dir, tmp_path):
    paddle.seed(1)
    q = ElectraForQuestionAnswering.from_pretrained(pretrained_dir, beam_size=5)
    q.eval()
    ids = paddle.randint(200, 2000, [2, 16])
    tt = paddle.to_tensor([[0] * 6 + [1] * 10, [0] * 4 + [1] * 12])
    start_logits, stp, sti, etp, eti, ans = q(ids, tt)
    assert stp.shape == [2, 5] and etp.shape == [2, 5, 5] and ans.shape == [2]
    # starts and ends only in the second segment, or [CLS] (the original's mask allows position 0)
    assert ((sti.numpy()[0] >= 6) | (sti.numpy()[0] == 0)).all()
    assert ((eti.numpy()[1] >= 4) | (eti.numpy()[1] == 0)).all() and not (eti.numpy()[1] == 1).any()
    # the split-weight end logits equal the original's dense(concat(h_start, h_j))
    h = q.electra(ids, tt)
    am = answer_mask_from(tt, None, ids)
    hs = paddle.take_along_axis(h, sti.unsqueeze(-1), axis=1)
    cat = paddle.concat([hs.unsqueeze(2).expand([2, 5, 16, 64]), h.unsqueeze(1).expand([2, 5, 16, 64])], -1)
    ref = q.qa.qa_logits(paddle.nn.functional.gelu(q.qa.qa_hidden(cat))).squeeze(-1) + 1000 * (am.unsqueeze(1) - 1)
    ref = paddle.topk(paddle.nn.functional.log_softmax(ref, -1), k=5)
    np.testing.assert_allclose(ref[0].numpy(), etp.numpy(), atol=1e-5)
    np.testing.assert_array_equal(ref[1].numpy(), eti.numpy())
    # training mode and the loss
    outs = q(ids, tt, start_positions=paddle.to_tensor([7, 5]))
    loss = q.loss(outs, paddle.to_tensor([7, 5]), paddle.to_tensor([8, 9]))
    assert loss.shape == [] and float(loss) > 0
    q.save_pretrained(str(tmp_path / "qa"))
    q2 = ElectraForQuestionAnswering.from_pretrained(str(tmp_path / "qa"))
    q2.eval()
    assert q2.beam_size == 5 and not q2.simple
    np.testing.assert_array_equal(q2(ids, tt)[3].numpy(), etp.numpy())
    s = ElectraForQuestionAnswering.from_pretrained(pretrained_dir, simple=True)
    assert [o.shape for o in s(ids, tt)] == [[2, 16], [2, 16]]
    assert s.load_report.newly_initialized == ["qa.qa_outputs.bias", "qa.qa_outputs.weight"]


def test_token_loss_ignores_unlabelled():
    logits = paddle.to_tensor(np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]], "float32")))
    loss = ElectraForTokenClassification.loss(logits, paddle.to_tensor([[-100, 0, 1]]))
    assert abs(float(loss) - (-np.log(0.9) - np.log(0.8))) < 1e-5


# --- layerwise learning rates -----------------------------------------------------------------------
@pytest.mark.parametrize("corrected", [False, True])
def test_layerwise_lr_ratios(corrected):
    m = ElectraForSequenceClassification(ElectraConfig(**TINY))  # 2 layers
    opt, _ = create_optimizer(m, 1e-3, 10, 1, layerwise_lr_decay=0.8, corrected_layer_depth=corrected)
    by_name = {n: opt._electra_lr_ratios.get(p.name, 1.0) for n, p in m.named_parameters()}
    top = 4 if not corrected else 3  # n + 2 (original) or n + 1
    assert by_name["electra.embeddings.word_embeddings.weight"] == pytest.approx(0.8 ** top)
    assert by_name["electra.embeddings_project.weight"] == pytest.approx(0.8 ** top)
    assert by_name["electra.encoder.layer.0.attention.self.query.weight"] == pytest.approx(0.8 ** (top - 1))
    # the original's quirk: the top layer gets decay^2, the head 1; corrected: decay^1
    assert by_name["electra.encoder.layer.1.output.dense.weight"] == pytest.approx(0.8 ** (2 if not corrected else 1))
    assert by_name["classifier.weight"] == pytest.approx(1.0)


# --- the CMRC 2018 / DRCD scorer ------------------------------------------------------------------------
def test_cmrc_segmentation():
    assert metrics.mixed_segmentation("ELECTRA模型 2020年") == ["electra", "模", "型", "2020", "年"]
    # removed punctuation does not split the run around it (the official script's behaviour)
    assert metrics.mixed_segmentation("a-b。c", rm_punc=True) == ["abc"]
    assert metrics.mixed_segmentation("a-b", rm_punc=False) == ["a", "-", "b"]
    assert metrics.mixed_segmentation("《红楼梦》") == ["《", "红", "楼", "梦", "》"]
    assert metrics.remove_punctuation(" 《红楼梦》 ") == "红楼梦"
    assert metrics.remove_punctuation("好……") == "好……"  # "……" is one list entry of two characters


def test_cmrc_scores_hand_computed():
    # gold 北京大学 (4 tokens) vs 北京 (2): lcs 2, p 1, r 0.5 -> F1 2/3; no EM
    assert metrics.cmrc_f1(["北京大学"], "北京") == pytest.approx(2 / 3)
    assert metrics.cmrc_em(["北京大学"], "北京") == 0
    # the best of several references counts; punctuation is ignored by EM and F1
    assert metrics.cmrc_em(["北京大学", "《北京》"], "北京") == 1
    assert metrics.cmrc_f1(["北京大学", "《北京》"], "北京") == 1
    # mixed: [electra, 模, 型] vs [electra] -> p 1, r 1/3 -> 0.5
    assert metrics.cmrc_f1(["ELECTRA模型"], "electra") == pytest.approx(0.5)
    # longest common *contiguous* run: [甲 乙 丙 丁] vs [甲 丙 丁]: 2 -> p 2/3, r 1/2 -> 4/7
    assert metrics.cmrc_f1(["甲乙丙丁"], "甲丙丁") == pytest.approx(4 / 7)
    assert metrics.cmrc_f1(["甲"], "") == 0 and metrics.cmrc_f1(["甲"], "乙") == 0
    dataset = {"data": [{"paragraphs": [{"qas": [
        {"id": "A", "question": "?", "answers": [{"text": "北京大学"}]},
        {"id": "B", "question": "?", "answers": [{"text": "甲乙丙丁"}]},
        {"id": "C", "question": "?", "answers": [{"text": "x"}]}]}]}]}
    res = metrics.cmrc_evaluate(dataset, {"A": "北京大学。", "B": "甲丙丁"}, warn=None)
    f1 = 100 * (1 + 4 / 7) / 3
    assert res == {"AVERAGE": "%.3f" % ((f1 + 100 / 3) / 2), "F1": "%.3f" % f1, "EM": "%.3f" % (100 / 3),
                   "TOTAL": 3, "SKIP": 1}


def test_cmrc_script(tmp_path):
    data = {"data": [{"paragraphs": [{"qas": [{"id": "Q", "question": "?", "answers": [{"text": "上海"}]}]}]}]}
    (tmp_path / "d.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "p.json").write_text(json.dumps({"Q": "上海"}, ensure_ascii=False), encoding="utf-8")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "finetune/cmrc2018_drcd_evaluate.py"),
                          str(tmp_path / "d.json"), str(tmp_path / "p.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert (last["EM"], last["F1"], last["AVERAGE"], last["TOTAL"], last["SKIP"]) == ("100.000", "100.000", "100.000", 1, 0)
    out = subprocess.run([sys.executable, os.path.join(ROOT, "finetune/cmrc2018_drcd_evaluate.py"),
                          str(tmp_path / "d.json"), str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert out.returncode == 2 and "missing.json" in out.stderr


def test_chunk_f1():
    res = metrics.chunk_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert res["precision"] == 100 and res["recall"] == 50 and res["f1"] == pytest.approx(200 / 3)


# --- a tiny fine-tuning of each task family -----------------------------------------------------------------
def _run(tmp_path, pretrained_dir, task, **hp):
    from paddle_electra.finetuning.trainer import run_finetuning
    hparams = dict(task_names=[task], data_dir=str(tmp_path), model_name=pretrained_dir, learning_rate=2e-3,
                   train_batch_size=8, eval_batch_size=4, warmup_proportion=0.0, log_every=5, device="cpu", **hp)
    return run_finetuning(FinetuneConfig(**hparams))


def test_tiny_classification(tmp_path, pretrained_dir, capsys):
    rows = ["label\ttext_a"] + [f"1\t好好好{c}很好" for c in "甲乙丙丁戊己庚辛"] + [f"0\t坏坏坏{c}太坏" for c in "甲乙丙丁戊己庚辛"]
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", "\n".join(rows) + "\n")
    write(tmp_path / "finetuning_data/chnsenticorp/dev.tsv", "\n".join(rows) + "\n")
    res = _run(tmp_path, pretrained_dir, "chnsenticorp", num_train_epochs=8, max_seq_length=16, num_trials=2)
    printed = capsys.readouterr().out
    assert "chnsenticorp dev: accuracy: " in printed and " - loss: " in printed
    assert res["summary"]["dev_accuracy"]["max"] == 100.0
    assert len(res["summary"]["dev_accuracy"]["values"]) == 2
    saved = json.load(open(tmp_path / "results/chnsenticorp_results.json"))
    assert saved["summary"]["dev_accuracy"]["mean"] == pytest.approx(np.mean(saved["summary"]["dev_accuracy"]["values"]))
    model = ElectraForSequenceClassification.from_pretrained(str(tmp_path / "finetuning_models/chnsenticorp_model_2"))
    assert model.labels == ["0", "1"]
    losses = [json.loads(l)["loss"] for l in open(tmp_path / "results/chnsenticorp_train_trial1.jsonl")]
    assert losses[-1] < losses[0]


def sts_rows():
    """A tiny STS-like set: the score is set by the second text's kind."""
    kinds = [("好好好{}很好", 5.0), ("一般般{}还行", 2.5), ("坏坏坏{}太坏", 0.0)]
    return [(f"今天{c}怎么样", b.format(c), score) for c in "甲乙丙丁戊己庚辛" for b, score in kinds]


def test_tiny_regression_the_worked_example(tmp_path, pretrained_dir):
    """docs/design.md's worked example: task "sts" is one reader (finetuning.tasks.STS) bound to one
    spec ("text-regression"); it trains, scores, and predicts through ElectraPredictor."""
    from paddle_electra.inference import ElectraPredictor
    from paddle_electra.tasks import get_spec
    rows = ["text_a\ttext_b\tscore"] + [f"{a}\t{b}\t{score}" for a, b, score in sts_rows()]
    write(tmp_path / "finetuning_data/sts/train.tsv", "\n".join(rows) + "\n")
    write(tmp_path / "finetuning_data/sts/dev.tsv", "\n".join(rows[1:]) + "\n")  # no header: columns 0, 1, 2
    res = _run(tmp_path, pretrained_dir, "sts", num_train_epochs=10, max_seq_length=24)
    assert res["summary"]["dev_pearson"]["max"] > 90 and res["summary"]["dev_spearman"]["max"] > 80
    assert res["summary"]["dev_mse"]["max"] < 1.0  # scores 0..5: the mean alone leaves MSE 4.2
    losses = [json.loads(l)["loss"] for l in open(tmp_path / "results/sts_train_trial1.jsonl")]
    assert losses[-1] < losses[0] / 4
    model_dir = str(tmp_path / "finetuning_models/sts_model_1")
    model = get_spec("text-regression").model_class.from_pretrained(model_dir)
    assert model.num_labels == 1 and model.load_report.complete
    t = make_task("sts", tmp_path)
    examples = t.get_examples("dev")
    from paddle_electra.finetuning.trainer import make_predictor, predict
    feats = t.featurize(examples, False)
    want = t.predictions(examples, feats, predict(t, model, make_predictor(model, t, "dygraph"), feats, 4))
    pred = ElectraPredictor.from_pretrained(model_dir, task="text-regression")
    got = pred.predict_texts([e.text_a for e in examples], [e.text_b for e in examples], max_seq_length=24)
    np.testing.assert_allclose([g[0] for g in got], want, atol=1e-4)
    assert t.score("dev", examples, feats, predict(t, model, make_predictor(model, t, "inference"), feats, 4)) == \
        pytest.approx(res["trials"][0]["dev"], abs=1e-3)


def test_tiny_tagging(tmp_path, pretrained_dir):
    sents = ["张三在北京", "李四去上海", "王五住广州", "赵六到深圳"] * 3
    def tags(s):
        return ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    text = "\n\n".join("\n".join(f"{c} {t}" for c, t in zip(s, tags(s))) for s in sents) + "\n"
    write(tmp_path / "finetuning_data/msra_ner/train.txt", text)
    write(tmp_path / "finetuning_data/msra_ner/dev.txt", text)
    res = _run(tmp_path, pretrained_dir, "msra_ner", num_train_epochs=15, max_seq_length=16)
    assert res["summary"]["dev_f1"]["max"] > 90


def test_tiny_qa(tmp_path, pretrained_dir):
    paras = []
    for i, (city, other) in enumerate([("北京", "上海"), ("广州", "深圳"), ("南京", "杭州"), ("成都", "重庆")] * 2):
        ctx = f"{other}很美。{city}是答案。{other}也不错。"
        paras.append({"context": ctx, "qas": [{"id": f"Q{i}", "question": "答案是哪里？",
                                                "answers": [{"text": city, "answer_start": ctx.index(city)}]}]})
    data = json.dumps({"data": [{"paragraphs": paras}]}, ensure_ascii=False)
    write(tmp_path / "finetuning_data/cmrc2018/train.json", data)
    write(tmp_path / "finetuning_data/cmrc2018/dev.json", data)
    res = _run(tmp_path, pretrained_dir, "cmrc2018", num_train_epochs=25, max_seq_length=32, beam_size=5,
               doc_stride=8, save_model=False)
    preds = json.load(open(tmp_path / "results/cmrc2018_qa/cmrc2018_dev_preds.json"))
    assert set(preds) == {f"Q{i}" for i in range(8)}
    assert res["summary"]["dev_em"]["max"] >= 75


def test_inference_backend_matches_dygraph(tmp_path, pretrained_dir):
    pytest.importorskip("paddle.inference")
    from paddle_electra.finetuning.trainer import make_predictor, predict
    write(tmp_path / "finetuning_data/chnsenticorp/dev.tsv", "label\ttext_a\n1\t很好很好\n0\t差\n1\t还行吧，不错\n")
    t = make_task("chnsenticorp", tmp_path)
    model = t.build_model(pretrained_dir)
    feats = t.featurize(t.get_examples("dev"), False)
    dy = predict(t, model, make_predictor(model, t, "dygraph"), feats, 2)
    inf = predict(t, model, make_predictor(model, t, "auto"), feats, 2)
    assert len(dy) == len(inf) == 3
    np.testing.assert_allclose([r["logits"] for r in inf], [r["logits"] for r in dy], atol=1e-4)
    from paddle_electra.finetuning.trainer import Evaluation, evaluate
    ev = evaluate(t, model, "dev")  # a named 4-tuple, as annotated
    assert isinstance(ev, Evaluation) and set(ev.scores) == {"accuracy", "loss"} and len(ev.rows) == len(ev.features) == 3


def test_cail_train_then_evaluate_only(tmp_path, pretrained_dir):
    rows = [{"fact": f"被告人{c}盗窃财物", "meta": {"accusation": ["盗窃"]}} for c in "甲乙丙"] + \
           [{"fact": f"被告人{c}故意伤害他人", "meta": {"accusation": ["故意伤害"]}} for c in "甲乙丙"]
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    write(tmp_path / "finetuning_data/cail/train.json", text)
    write(tmp_path / "finetuning_data/cail/dev.json", text)
    _run(tmp_path, pretrained_dir, "cail", num_train_epochs=1, max_seq_length=24)
    model_dir = str(tmp_path / "finetuning_models/cail_model_1")
    assert json.load(open(os.path.join(model_dir, "label_map.json"))) == {"故意伤害": 0, "盗窃": 1}
    os.remove(tmp_path / "finetuning_data/cail/train.json")  # the labels now come from the model
    from paddle_electra.finetuning.trainer import run_finetuning
    res = run_finetuning(FinetuneConfig(task_names=["cail"], data_dir=str(tmp_path), model_name=model_dir,
                                        do_train=False, max_seq_length=24, device="cpu",
                                        results_dir=str(tmp_path / "eval_only")))
    assert 0 <= res["summary"]["dev_accuracy"]["max"] <= 100
    # the same through `paddle-electra evaluate`'s add_arguments / run pair
    import argparse
    from paddle_electra.finetuning.cli import evaluate
    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    args = p.parse_args(["--data-dir", str(tmp_path), "--model-name", model_dir, "--hparams",
                         json.dumps({"task_names": ["cail"], "max_seq_length": 24, "device": "cpu", "num_trials": 3}),
                         "--set", f"results_dir={tmp_path / 'cli_eval'}"])
    assert evaluate.run(args) == 0
    (saved_path,) = (tmp_path / "cli_eval").glob("cail_eval_results_*.json")  # evaluate's own file
    saved = json.load(open(saved_path))
    assert len(saved["trials"]) == 1 and "model_dir" not in saved["trials"][0]
    assert saved["summary"]["dev_accuracy"]["max"] == pytest.approx(res["summary"]["dev_accuracy"]["max"])


# --- issue 23 item 7: fine-tuning data errors, each named, each before training --------------------------------
def test_a_field_over_csvs_limit_is_read(tmp_path):
    long = "好" * 200_000  # csv's default field limit is 131,072 characters
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", f"label\ttext_a\n1\t{long}\n0\t坏\n")
    ex = make_task("chnsenticorp", tmp_path).get_examples("train")
    assert [len(e.text_a) for e in ex] == [200_000, 1]
    import csv
    assert csv.field_size_limit() == 131072  # left as it was


def test_a_folder_as_a_data_file_is_named(tmp_path):
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(DataError, match=r"train_file .*a_folder is a folder; expected a data file"):
        make_task("chnsenticorp", tmp_path, train_file="a_folder").get_examples("train")
    from paddle_electra.finetuning.tasks import read_text
    with pytest.raises(DataError, match=r"a_folder is a folder"):
        read_text(str(tmp_path / "a_folder"))


def test_a_third_column_is_warned_about_with_file_and_line(tmp_path, caplog):
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", "label\ttext_a\n1\t很好\n0\t太差\t了\n1\t好\t\n")
    with caplog.at_level("WARNING", logger="paddle_electra.finetuning.tasks"):
        ex = make_task("chnsenticorp", tmp_path).get_examples("train")
    assert [e.text_a for e in ex] == ["很好", "太差", "好"]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "train.tsv: 1 line(s) have more than 2 tab-separated columns (line 3)" in said[0], said


def test_hparams_of_the_wrong_type_name_the_key():
    from argparse import Namespace
    from paddle_electra.finetuning.cli import config_from_args
    args = Namespace(set=['train_batch_size="abc"'], hparams=None, data_dir=".", model_name="m")
    with pytest.raises(HparamsError, match=r"train_batch_size must be an integer, got str 'abc'"):
        config_from_args(args)
    for key, value, match in [("learning_rate", "fast", "learning_rate must be a number or null"),
                              ("do_train", "yes", "do_train must be true or false"),
                              ("max_seq_length", 12.5, "max_seq_length must be an integer or null")]:
        with pytest.raises(HparamsError, match=match):
            FinetuneConfig(**{key: value})
    assert FinetuneConfig(learning_rate=1, num_train_epochs=2).learning_rate == 1  # an integer is a number


@pytest.mark.parametrize("case", ["bad dev label", "max_seq_length", "bad test label"])
def test_errors_that_would_come_after_training_come_before_it(tmp_path, pretrained_dir, monkeypatch, case):
    from paddle_electra.finetuning import trainer
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained before the error"))
    rows = "label\ttext_a\n1\t很好\n0\t太差\n"
    write(tmp_path / "finetuning_data/chnsenticorp/train.tsv", rows)
    write(tmp_path / "finetuning_data/chnsenticorp/dev.tsv", rows + ("7\t还行\n" if case == "bad dev label" else ""))
    write(tmp_path / "finetuning_data/chnsenticorp/test.tsv", rows + ("x\t还行\n" if case == "bad test label" else ""))
    hp = dict(max_seq_length=100000 if case == "max_seq_length" else 16, do_test=True, save_model=False)
    error, match = {"bad dev label": (DataError, r"dev.tsv: line 4: label '7' is not one of"),
                    "bad test label": (DataError, r"test.tsv: line 4: label 'x' is not one of"),
                    "max_seq_length": (HparamsError, r"max_seq_length 100000 is more than the model's "
                                                     r"max_position_embeddings \(512")}[case]
    with pytest.raises(error, match=match):
        _run(tmp_path, pretrained_dir, "chnsenticorp", **hp)

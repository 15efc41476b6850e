"""paddle_electra.pipeline on tiny randomly initialised fine-tuned-style folders: the result shapes, the
labels of the folder's label map, agreement with the dygraph model, entities and answers that are
slices of the input, the task read from the folder, and one-line errors."""
import numpy as np
import paddle
import pytest

import paddle_electra
from paddle_electra.config import ElectraConfig
from paddle_electra.heads import (ElectraForQuestionAnswering, ElectraForSequenceClassification,
                                  ElectraForTokenClassification)
from paddle_electra.pipeline import Pipeline, format_result
from paddle_electra.tasks import entities
from paddle_electra.tokenizer import ElectraTokenizer

TINY = ElectraConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
TEXTS = ["房间很干净，服务员态度也很好。", "太差了", "这本书写得很精彩，内容丰富，值得一读。"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    paddle.seed(1)
    cls = ElectraForSequenceClassification(TINY, id2label=["neg", "pos", "mid"]).save_pretrained(str(root / "cls"))
    paddle.seed(2)
    tok = ElectraForTokenClassification(TINY, id2label=TAGS).save_pretrained(str(root / "tok"))
    paddle.seed(3)
    qa = ElectraForQuestionAnswering(TINY).save_pretrained(str(root / "qa"))
    return {"seq-cls": cls, "token-cls": tok, "reading-comprehension": qa}


def test_seq_cls_labels_and_scores_match_the_dygraph_model(dirs):
    clf = paddle_electra.pipeline("seq-cls", dirs["seq-cls"], engine="paddle")
    out = clf(TEXTS)
    model = ElectraForSequenceClassification.from_pretrained(dirs["seq-cls"])
    model.eval()
    enc = ElectraTokenizer.from_pretrained(dirs["seq-cls"])(TEXTS)
    for text, ids, got in zip(TEXTS, enc["input_ids"], out):
        with paddle.no_grad():
            logits = model(paddle.to_tensor([ids])).numpy()[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert set(got) == {"label", "score"}
        assert got["label"] == ["neg", "pos", "mid"][int(p.argmax())]
        assert got["score"] == pytest.approx(float(p.max()), abs=1e-4)
    assert clf(TEXTS[0]) == out[0]  # one input: one result, not a list


def test_pairs_as_dicts_or_tuples_and_the_task_read_from_the_folder(dirs):
    clf = paddle_electra.pipeline(None, dirs["seq-cls"], engine="paddle")
    assert clf.task == "seq-cls"
    a = clf({"text": "今天天气不错", "text_pair": "我很喜欢"})
    assert a == clf(("今天天气不错", "我很喜欢"))
    matching = paddle_electra.pipeline("text-matching", dirs["seq-cls"], engine="paddle")
    assert matching([("今天天气不错", "我很喜欢")]) == [a]
    with pytest.raises(ValueError, match=r"input 0: field 'text_pair' is missing"):
        matching([{"text": "只有一句"}])


def test_token_cls_entities_are_slices_of_the_text(dirs):
    ner = paddle_electra.pipeline("token-cls", dirs["token-cls"], engine="paddle")
    text = "王小明在北京的清华大学工作，李华住在上海。"
    ents = ner(text)
    assert isinstance(ents, list)
    for e in ents:
        assert set(e) == {"text", "label", "start", "end"}
        assert text[e["start"]:e["end"]] == e["text"] and e["label"] in ("PER", "LOC")
    # the same entities as chunking the per-character labels of the shared decode (tasks.predict)
    from paddle_electra.tasks import DygraphPredictor, get_spec, predict
    spec = get_spec("token-cls")
    model = ElectraForTokenClassification.from_pretrained(dirs["token-cls"])
    (labels, _), = predict(spec, ner.tokenizer, DygraphPredictor(model, spec), model, [[text]], 128, 8,
                           labels=TAGS)[0]
    assert len(labels) == len(text)
    assert ents == entities(text, labels)


def test_entities_chunking_and_word_spans():
    text = "王小明在北京"
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert entities(text, tags) == [{"text": "王小明", "label": "PER", "start": 0, "end": 3},
                                    {"text": "北京", "label": "LOC", "start": 4, "end": 6}]
    words = "John\002lives\002in\002New\002York"
    spans = [(0, 4), (5, 10), (11, 13), (14, 17), (18, 22)]
    got = format_result("token-cls", (["B-PER", "O", "O", "B-LOC", "I-LOC"], None), words, spans)
    assert [(e["label"], e["start"], e["end"]) for e in got] == [("PER", 0, 4), ("LOC", 14, 22)]
    with pytest.raises(ValueError, match="2 labels for 6 units"):
        entities(text, tags[:2])


def test_reading_comprehension_answer_is_a_slice_of_the_context(dirs):
    qa = paddle_electra.pipeline(None, dirs["reading-comprehension"], engine="paddle")
    assert qa.task == "reading-comprehension"
    context = "哈尔滨是黑龙江省的省会，位于中国东北。"
    out = qa({"context": context, "question": "黑龙江省的省会是哪里？"})
    assert set(out) == {"answer", "start", "end", "score"}
    assert context[out["start"]:out["end"]] == out["answer"] and out["answer"]
    assert 0.0 <= out["score"] <= 1.0
    assert qa([(context, "黑龙江省的省会是哪里？")]) == [out]
    with pytest.raises(ValueError, match=r"unknown field 'contxt' \(did you mean 'context'\?\)"):
        qa({"contxt": context, "question": "?"})


def test_errors_are_one_line_and_name_the_problem(dirs, tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'seq-clss' \(did you mean 'seq-cls'\?\)"):
        paddle_electra.pipeline("seq-clss", dirs["seq-cls"])
    with pytest.raises(ValueError, match="not a model fine-tuned for task 'token-cls'"):
        paddle_electra.pipeline("token-cls", dirs["seq-cls"])
    with pytest.raises(ValueError, match="task 'discriminator' has no pipeline"):
        paddle_electra.pipeline("discriminator", dirs["seq-cls"])
    with pytest.raises(FileNotFoundError, match="neither a folder nor a registered variant"):
        paddle_electra.pipeline("seq-cls", str(tmp_path / "missing"))
    clf = Pipeline("seq-cls", dirs["seq-cls"], engine="paddle")
    with pytest.raises(ValueError, match=r"data\[1\]\[0\] is empty"):
        clf(["好", " "])


def test_pipeline_is_the_function_and_the_module():
    import importlib
    mod = importlib.import_module("paddle_electra.pipeline")
    assert callable(paddle_electra.pipeline) and callable(mod)
    assert mod.pipeline.__name__ == "pipeline"

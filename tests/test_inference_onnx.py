"""ONNX export (paddle2onnx) run by onnxruntime gives the predictor's outputs."""
import numpy as np
import paddle
import pytest

pytest.importorskip("paddle2onnx")
ort = pytest.importorskip("onnxruntime")

from paddle_electra.config import ElectraConfig  # noqa: E402
from paddle_electra.heads import ElectraForSequenceClassification  # noqa: E402
from paddle_electra.inference import ElectraPredictor, export_onnx  # noqa: E402
from paddle_electra.modeling import ElectraDiscriminator  # noqa: E402

TINY = ElectraConfig(embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)


@pytest.mark.parametrize("task,cls", [("discriminator", ElectraDiscriminator),
                                      ("seq-cls", ElectraForSequenceClassification)])
def test_onnx_matches_predictor(tmp_path, task, cls):
    d = str(tmp_path / "m")
    paddle.seed(4)
    cls(TINY).save_pretrained(d)
    path = export_onnx(d, str(tmp_path / "onnx" / "model.onnx"), task=task)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "token_type_ids", "attention_mask"]
    pred = ElectraPredictor.from_pretrained(d, task=task)
    rng = np.random.default_rng(0)
    for B, S in [(3, 21), (1, 5)]:  # dynamic batch and length
        ids = rng.integers(1, 21128, (B, S)).astype("int64")
        mask = np.ones_like(ids)
        mask[0, S // 2:] = 0
        types = np.zeros_like(ids)
        got = session.run(None, {"input_ids": ids, "token_type_ids": types, "attention_mask": mask})[0]
        np.testing.assert_allclose(got, pred(ids, types, mask), atol=1e-4, rtol=0)

"""The exported-graph cache: used only when this install wrote it, never read or written through a link."""
import json
import os
import shutil

import numpy as np
import paddle
import pytest

from paddle_electra import inference
from paddle_electra.inference import cache, static_export
from paddle_electra.heads import ElectraForSequenceClassification
from paddle_electra.inference import ElectraPredictor
from test_inference import TINY, _batch, _dygraph


@pytest.fixture
def two_models(tmp_path):
    out = []
    for seed in (1, 2):
        paddle.seed(seed)
        out.append(ElectraForSequenceClassification(TINY, num_labels=3).save_pretrained(str(tmp_path / f"m{seed}")))
    return out


def _logits(model_dir):
    ids, types, mask = _batch()
    return ElectraPredictor.from_pretrained(model_dir, task="seq-cls", device="cpu")(ids, types, mask), \
        _dygraph(model_dir, "seq-cls", ids, types, mask)[0]


def test_a_shipped_graph_cache_is_rebuilt_and_our_own_reused(two_models, monkeypatch):
    a, b = two_models
    got_a, want_a = _logits(a)
    np.testing.assert_allclose(got_a, want_a, atol=1e-4)
    # b ships a's graph under b's fingerprint (anyone can compute it: a hash of b's own files)
    shutil.copytree(os.path.join(a, "inference"), os.path.join(b, "inference"))
    meta_path = os.path.join(b, "inference", "seq-cls", inference.EXPORT_META)
    meta = json.load(open(meta_path))
    meta.update(fingerprint=inference.fingerprint(b, "seq-cls"), source=b)
    json.dump(meta, open(meta_path, "w"))
    got_b, want_b = _logits(b)
    assert np.abs(want_b - want_a).max() > 1e-2  # the two models differ
    np.testing.assert_allclose(got_b, want_b, atol=1e-4)  # b's own weights, not the shipped graph
    # a cache this install signed is used as it is
    monkeypatch.setattr(static_export, "export", lambda *a, **k: pytest.fail("re-exported a signed cache"))
    np.testing.assert_allclose(_logits(a)[0], got_a, atol=0)
    np.testing.assert_allclose(_logits(b)[0], got_b, atol=0)
    assert oct(os.stat(os.path.join(os.environ["PADDLE_ELECTRA_HOME"], inference.KEY_NAME)).st_mode & 0o777) == "0o600"


def test_a_symlinked_inference_folder_is_not_written_through(two_models, tmp_path):
    a, _ = two_models
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "seq-cls").write_text("keep me")  # where the export would go through the link
    os.symlink(outside, os.path.join(a, "inference"))
    got, want = _logits(a)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert sorted(os.listdir(outside)) == ["seq-cls"] and (outside / "seq-cls").read_text() == "keep me"
    export_dir, _ = inference.exported_model(a, "seq-cls")
    assert export_dir.startswith(inference.fallback_cache_root())


def test_a_symlinked_graph_file_is_not_read(two_models):
    a, _ = two_models
    _logits(a)
    graph = os.path.join(a, "inference", "seq-cls", inference.MODEL_PREFIX + ".pdiparams")
    os.rename(graph, graph + ".real")
    os.symlink(graph + ".real", graph)
    export_dir, _ = inference.exported_model(a, "seq-cls")
    assert not os.path.islink(os.path.join(export_dir, inference.MODEL_PREFIX + ".pdiparams"))


def test_two_processes_building_the_cache_at_once_share_one_export(two_models, monkeypatch):
    """Two processes (here threads: flock excludes each open of the lock file) load a model without a
    cache at once: one exports, the other waits on the folder's lock (beside the folder, which the
    export replaces) and then uses that export instead of replacing the folder under the first one
    while it writes its ONNX graphs there."""
    import threading
    import time
    a, _ = two_models
    real_export, exports, inside = static_export.export, [], threading.Event()

    def slow_export(model, path, meta=None):
        exports.append(path)
        inside.set()
        time.sleep(0.5)  # the second loader arrives while the folder is being written
        return real_export(model, path, meta)
    monkeypatch.setattr(static_export, "export", slow_export)
    results = {}

    def load(name):
        results[name] = inference.exported_model(a, "seq-cls")
    first = threading.Thread(target=load, args=("first",))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=load, args=("second",))
    second.start()
    first.join(60)
    second.join(60)
    assert len(exports) == 1, exports  # the second one used the first one's export
    assert results["first"] == results["second"]
    export_dir = results["first"][0]
    # the lock file is beside the cache folder, not in it
    assert os.path.exists(os.path.join(a, "inference", ".seq-cls.lock"))
    assert not [n for n in os.listdir(export_dir) if n.endswith(".lock")]


def test_two_processes_asking_for_int8_at_once_both_get_it(tmp_path):
    """issue 23 item 5: two concurrent from_pretrained(precision="int8", engine="onnxruntime") on a model
    without a cache; one failed with "cannot write the onnxruntime graph there (No such file or directory)"."""
    import subprocess
    import sys
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    paddle.seed(3)
    model = ElectraForSequenceClassification(TINY, num_labels=2).save_pretrained(str(tmp_path / "m"))
    code = ("import sys; from paddle_electra.inference import ElectraPredictor; "
            "p = ElectraPredictor.from_pretrained(sys.argv[1], task='seq-cls', precision='int8', engine='onnxruntime', "
            "device='cpu', num_threads=1); print(p.engine, p.graph)")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs = [subprocess.Popen([sys.executable, "-c", code, model], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    graphs = {o.strip().splitlines()[-1] for o in outs}
    assert len(graphs) == 1 and graphs.pop().endswith(inference.ONNX_INT8), outs


def test_a_read_only_model_folder_with_only_the_paddle_graph_still_gives_int8(two_models, monkeypatch):
    """issue 23 item 9: the cache beside a read-only model held only the Paddle graph (made while it was
    writable); int8 needs ONNX graphs made in the cache folder, so it failed ("cannot write the onnxruntime
    graph there"). Now the export is made (once) in the home cache, as for a fresh read-only folder."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("paddle2onnx")
    a, _ = two_models
    fp32 = ElectraPredictor.from_pretrained(a, task="seq-cls", device="cpu", engine="paddle")
    assert fp32.export_dir == os.path.join(a, "inference", "seq-cls")
    # read-only from now on (as root chmod would not stop writes: refuse them instead)
    inside = lambda p: os.path.abspath(p).startswith(os.path.abspath(a) + os.sep)  # noqa: E731
    real_writable, real_write_file = static_export._writable, cache.write_file
    monkeypatch.setattr(static_export, "_writable", lambda folder: not inside(folder) and real_writable(folder))

    def write_file(path, build):
        if inside(path):
            raise PermissionError(13, "Permission denied", path)
        return real_write_file(path, build)
    monkeypatch.setattr(cache, "write_file", write_file)
    int8 = ElectraPredictor.from_pretrained(a, task="seq-cls", device="cpu", engine="onnxruntime", precision="int8")
    assert int8.export_dir.startswith(inference.fallback_cache_root()) and int8.graph.endswith(inference.ONNX_INT8)
    ids, types, mask = _batch()
    assert int8(ids, types, mask).shape == fp32(ids, types, mask).shape
    # the Paddle engine still reads the read-only folder's own cache
    assert ElectraPredictor.from_pretrained(a, task="seq-cls", device="cpu", engine="paddle").export_dir == \
        fp32.export_dir

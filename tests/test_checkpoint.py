"""paddle_electra.io / modeling_utils / resolve: save/load round trips, strict loading, bad files, pickle policy,
name resolution and atomic writes."""
import json
import os

import numpy as np
import pytest

from paddle_electra.io import CheckpointError, OutputError, atomic_dir, load_tensors, save_tensors
from paddle_electra.modeling_utils import load_state_strict
from paddle_electra.resolve import resolve
from paddle_electra.config import ConfigError, ElectraConfig

TINY = ElectraConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32)


def _state(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def pretraining_dir(tmp_path_factory):
    from paddle_electra.cli import main
    out = str(tmp_path_factory.mktemp("init") / "small2")
    assert main(["init", "chinese-electra-small", "--output", out, "--num-hidden-layers", "2", "--seed", "3"]) == 0
    return out


def test_init_writes_a_pretraining_dir(pretraining_dir):
    assert sorted(os.listdir(pretraining_dir)) == ["config.json", "generator.safetensors", "generator_config.json",
                                                   "model.safetensors", "vocab.txt"]
    cfg = json.load(open(os.path.join(pretraining_dir, "config.json")))
    gcfg = json.load(open(os.path.join(pretraining_dir, "generator_config.json")))
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["embedding_size"]) == (2, 256, 128)
    assert (gcfg["num_hidden_layers"], gcfg["hidden_size"], gcfg["num_attention_heads"]) == (2, 64, 1)


def test_round_trip_every_class(pretraining_dir, tmp_path):
    import paddle
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator, ElectraModel
    full = ElectraForPreTraining.from_pretrained(pretraining_dir)
    disc_state, gen_state = _state(full.discriminator), _state(full.generator)
    # the shared embeddings are one block in memory
    assert full.generator.electra.embeddings is full.discriminator.electra.embeddings
    expected = {
        ElectraForPreTraining: {**{f"discriminator.{k}": v for k, v in disc_state.items()},
                                **{f"generator.{k}": v for k, v in gen_state.items()}},
        ElectraDiscriminator: disc_state,
        ElectraGenerator: gen_state,
        ElectraModel: {k[len("electra."):]: v for k, v in disc_state.items() if k.startswith("electra.")},
    }
    ids = paddle.to_tensor([[1, 20, 30, 2, 0]])
    mask = paddle.to_tensor([[1, 1, 1, 1, 0]])
    for cls, want in expected.items():
        model = cls.from_pretrained(pretraining_dir).eval()
        _assert_same_state(_state(model), want)
        out = str(tmp_path / cls.__name__)
        model.save_pretrained(out)
        again = cls.from_pretrained(out).eval()
        _assert_same_state(_state(again), want)
        a, b = model(ids, attention_mask=mask), again(ids, attention_mask=mask)
        for x, y in zip(a if isinstance(a, tuple) else [a], b if isinstance(b, tuple) else [b]):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        if cls is not ElectraForPreTraining:
            assert json.load(open(os.path.join(out, "config.json")))["architectures"] == [cls.__name__]
    # a standalone generator dir (config.json + model.safetensors with generator names)
    assert sorted(os.listdir(tmp_path / "ElectraGenerator")) == ["config.json", "model.safetensors", "vocab.txt"]


def test_config_extra_fields_survive(tmp_path):
    from paddle_electra.modeling import ElectraModel
    cfg = TINY.replace(extra={"summary_type": "first", "id2label": {"0": "a"}})
    ElectraModel(cfg).save_pretrained(str(tmp_path / "m"))
    again = ElectraModel.from_pretrained(str(tmp_path / "m"))
    assert again.config == cfg and again.config.extra["id2label"] == {"0": "a"}


def test_strict_loading_lists_every_problem_and_leaves_model_unchanged():
    from paddle_electra.modeling import ElectraDiscriminator
    model = ElectraDiscriminator(TINY)
    before = _state(model)
    bad = dict(before)
    del bad["electra.encoder.layer.0.output.dense.bias"]
    bad["electra.pooler.weight"] = np.zeros((32, 32), "float32")
    bad["electra.embeddings.word_embeddings.weight"] = np.zeros((101, 16), "float32")
    bad["discriminator_predictions.dense.weight"] = np.ones((32, 32), "float32")  # fits: must not be applied
    with pytest.raises(CheckpointError) as e:
        load_state_strict(model, bad, "some/model.safetensors")
    msg = str(e.value)
    assert "some/model.safetensors" in msg
    assert "missing: electra.encoder.layer.0.output.dense.bias" in msg
    assert "unexpected: electra.pooler.weight" in msg
    assert "electra.embeddings.word_embeddings.weight: file (101, 16) vs model (100, 16)" in msg
    _assert_same_state(_state(model), before)


def test_from_pretrained_rejects_mismatched_file(tmp_path):
    from paddle_electra.modeling import ElectraDiscriminator
    path = str(tmp_path / "m")
    ElectraDiscriminator(TINY).save_pretrained(path)
    cfg = json.load(open(os.path.join(path, "config.json")))
    cfg["intermediate_size"] = 128
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
    with pytest.raises(CheckpointError, match=r"(?s)model.safetensors does not fit.*intermediate.dense.weight: "
                                              r"file \(32, 64\) vs model \(32, 128\)"):
        ElectraDiscriminator.from_pretrained(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_safetensors_names_the_file(tmp_path, damage):
    from paddle_electra.modeling import ElectraModel
    path = str(tmp_path / "m")
    ElectraModel(TINY).save_pretrained(path)
    f = os.path.join(path, "model.safetensors")
    data = open(f, "rb").read()
    data = {"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage]
    open(f, "wb").write(data)
    with pytest.raises(CheckpointError, match=f"{f}: cannot read safetensors file"):
        ElectraModel.from_pretrained(path)


def test_missing_weight_file(tmp_path):
    from paddle_electra.modeling import ElectraModel
    path = str(tmp_path / "m")
    ElectraModel(TINY).save_pretrained(path)
    os.remove(os.path.join(path, "model.safetensors"))
    with pytest.raises(CheckpointError, match="weight file not found: .*model.safetensors"):
        ElectraModel.from_pretrained(path)


def test_pickle_only_with_allow_pickle(tmp_path):
    import paddle
    from paddle_electra.modeling import ElectraModel
    path = str(tmp_path / "m")
    model = ElectraModel(TINY)
    model.save_pretrained(path)
    os.remove(os.path.join(path, "model.safetensors"))
    paddle.save(model.state_dict(), os.path.join(path, "model_state.pdparams"))
    with pytest.raises(CheckpointError, match="only the pickle file model_state.pdparams.*allow_pickle=True"):
        ElectraModel.from_pretrained(path)
    _assert_same_state(_state(ElectraModel.from_pretrained(path, allow_pickle=True)), _state(model))


def test_config_without_embedding_size(tmp_path):
    from paddle_electra.modeling import ElectraDiscriminator
    path = str(tmp_path / "m")
    model = ElectraDiscriminator(TINY)
    model.save_pretrained(path)
    cfg_file = os.path.join(path, "config.json")
    cfg = json.load(open(cfg_file))
    del cfg["embedding_size"]
    json.dump(cfg, open(cfg_file, "w"))
    with pytest.raises(ConfigError, match="'embedding_size' is missing"):
        ElectraConfig.from_json_file(cfg_file)
    # from_pretrained reads it off the word embeddings
    loaded = ElectraDiscriminator.from_pretrained(path)
    assert loaded.config.embedding_size == 16
    _assert_same_state(_state(loaded), _state(model))


def test_generator_error_names_generator_file(pretraining_dir, tmp_path):
    import shutil
    from paddle_electra.modeling import ElectraGenerator
    path = str(tmp_path / "p")
    shutil.copytree(pretraining_dir, path)
    g = load_tensors(os.path.join(path, "generator.safetensors"))
    del g["generator_predictions.output_bias"]
    save_tensors(g, os.path.join(path, "generator.safetensors"))
    with pytest.raises(CheckpointError, match=r"generator.safetensors does not fit.*\n  missing: "
                                              r"generator_predictions.output_bias"):
        ElectraGenerator.from_pretrained(path)


def test_pretraining_dir_with_unshared_embeddings_is_rejected(pretraining_dir, tmp_path):
    import shutil
    from paddle_electra.modeling import ElectraForPreTraining
    path = str(tmp_path / "p")
    shutil.copytree(pretraining_dir, path)
    g = load_tensors(os.path.join(path, "generator.safetensors"))
    g["electra.embeddings.LayerNorm.bias"] = g["electra.embeddings.LayerNorm.bias"] + 1
    save_tensors(g, os.path.join(path, "generator.safetensors"))
    with pytest.raises(CheckpointError, match="shared tensor electra.embeddings.LayerNorm.bias differs"):
        ElectraForPreTraining.from_pretrained(path)


def test_resolve_unknown_and_absent_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="'no-such-model' is neither a folder nor a registered variant"):
        resolve("no-such-model", download=False)
    with pytest.raises(FileNotFoundError) as e:
        resolve("hfl/chinese-electra-180g-base-discriminator", download=False)
    msg = str(e.value)
    local = os.path.join(os.environ["PADDLE_ELECTRA_HOME"], "chinese-electra-180g-base")
    assert f"weights for chinese-electra-180g-base are not at {local}" in msg
    assert f"paddle-electra convert tf --checkpoint <unzipped folder> --model chinese-electra-180g-base " \
           f"--output {local}" in msg
    assert "hfl/chinese-electra-180g-base-discriminator" in msg  # the HF repos to convert from
    assert f"paddle-electra convert hf --input <discriminator folder> --generator <generator folder> " \
           f"--output {local}" in msg
    assert "PADDLE_ELECTRA_HOME" in msg
    # once the files are there, the name resolves to the folder
    from paddle_electra.modeling import ElectraModel
    ElectraModel(TINY).save_pretrained(local)
    assert resolve("chinese-electra-180g-base", download=False) == local
    assert resolve(str(tmp_path), download=False) == str(tmp_path)


def test_atomic_dir(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(str(target)) as tmp:
            open(os.path.join(tmp, "a"), "w").write("half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []  # neither the target nor a temporary folder
    with atomic_dir(str(target)) as tmp:
        open(os.path.join(tmp, "a"), "w").write("v1")
    assert (target / "a").read_text() == "v1"
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(str(target)) as tmp:
            open(os.path.join(tmp, "b"), "w").write("v2")
            raise KeyboardInterrupt
    assert os.listdir(target) == ["a"] and (target / "a").read_text() == "v1"
    with pytest.raises(OutputError):
        with atomic_dir(str(target), check=lambda: (_ for _ in ()).throw(OutputError("no"))) as tmp:
            open(os.path.join(tmp, "b"), "w").write("v2")
    assert os.listdir(target) == ["a"] and os.listdir(tmp_path) == ["out"]
    with atomic_dir(str(target)) as tmp:
        open(os.path.join(tmp, "b"), "w").write("v2")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["out"]


def test_save_pretrained_failure_keeps_existing_dir(tmp_path):
    from paddle_electra.modeling import ElectraModel
    path = str(tmp_path / "m")
    model = ElectraModel(TINY)
    model.save_pretrained(path)
    before = {f: open(os.path.join(path, f), "rb").read() for f in os.listdir(path)}
    with pytest.raises(FileNotFoundError):
        ElectraModel(TINY).save_pretrained(path, vocab_file=str(tmp_path / "missing_vocab.txt"))
    assert {f: open(os.path.join(path, f), "rb").read() for f in os.listdir(path)} == before
    assert os.listdir(tmp_path) == ["m"]


def test_load_report_says_what_was_read_and_initialised(pretraining_dir, tmp_path):
    from paddle_electra.heads import ElectraForSequenceClassification
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining
    assert ElectraDiscriminator(TINY).load_report is None  # not loaded
    d = ElectraDiscriminator.from_pretrained(pretraining_dir)
    assert d.load_report.path == pretraining_dir and d.load_report.files == ["model.safetensors"]
    assert d.load_report.complete
    c = ElectraForSequenceClassification.from_pretrained(pretraining_dir, num_labels=3)
    assert c.load_report.newly_initialized == ["classifier.bias", "classifier.weight"]
    assert not c.load_report.complete
    c2 = ElectraForSequenceClassification.from_pretrained(c.save_pretrained(str(tmp_path / "cls")))
    assert c2.load_report.complete and c2.load_report.source_architectures == ["ElectraForSequenceClassification"]
    p = ElectraForPreTraining.from_pretrained(pretraining_dir)
    assert p.load_report.files == ["model.safetensors", "generator.safetensors"] and p.load_report.complete
    assert not hasattr(c, "newly_initialized")  # the report replaced the ad hoc attribute


# --- issue 23 item 9: a save killed with SIGKILL --------------------------------------------------------------
def _killed_while_saving(path, replacing: bool):
    """A child process that dies (SIGKILL) inside atomic_dir(path): while writing its temporary folder, or
    (replacing) between moving the previous folder aside and renaming the new one in."""
    import signal
    import subprocess
    import sys
    code = f"""
import os, signal
from paddle_electra import io
if {replacing!r}:
    real = os.rename
    def rename(src, dst):
        real(src, dst)
        if os.path.basename(dst) == "x":  # the previous folder is now aside
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename
with io.atomic_dir({path!r}) as tmp:
    open(os.path.join(tmp, "half.bin"), "wb").write(b"x" * 100)
    if not {replacing!r}:
        os.kill(os.getpid(), signal.SIGKILL)
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=root), timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_save_leaves_nothing_behind_after_the_next(tmp_path):
    path = str(tmp_path / "chnsenticorp_model_1")
    _killed_while_saving(path, replacing=False)
    left = [n for n in os.listdir(tmp_path) if n.startswith(".chnsenticorp_model_1.tmp-")]
    assert len(left) == 1 and not os.path.exists(path)  # what SIGKILL leaves
    with atomic_dir(path) as tmp:  # the next save
        open(os.path.join(tmp, "model.safetensors"), "wb").write(b"new")
    assert sorted(os.listdir(tmp_path)) == ["chnsenticorp_model_1"]
    # killed between the renames of a replacement: the previous folder is put back, then replaced
    _killed_while_saving(path, replacing=True)
    assert not os.path.exists(path) and any(n.startswith(".chnsenticorp_model_1.old-") for n in os.listdir(tmp_path))
    from paddle_electra.io import remove_stale_siblings
    remove_stale_siblings(path)
    assert sorted(os.listdir(tmp_path)) == ["chnsenticorp_model_1"]
    assert open(os.path.join(path, "model.safetensors"), "rb").read() == b"new"  # the previous save, kept


def test_a_live_saves_temporary_is_not_touched(tmp_path):
    path = str(tmp_path / "m")
    with atomic_dir(path) as tmp:
        with atomic_dir(str(tmp_path / "m")) as tmp2:  # another save of the same folder meanwhile
            assert os.path.isdir(tmp)  # ours, alive: kept
            open(os.path.join(tmp2, "a"), "w").write("2")
        open(os.path.join(tmp, "a"), "w").write("1")
    assert open(os.path.join(path, "a")).read() == "1" and os.listdir(tmp_path) == ["m"]


def test_mean_pooling_head_pools_real_tokens_and_survives_a_round_trip(tmp_path):
    """pooling="mean" (issue 20's sentence-head variant): the head reads the mean of the states of the
    tokens the mask keeps, so padding does not change the logits; saved in config.json and reloaded."""
    import paddle
    from paddle_electra.heads import ElectraForSequenceClassification
    paddle.seed(0)
    model = ElectraForSequenceClassification(TINY, num_labels=3, pooling="mean")
    model.eval()
    ids = paddle.to_tensor([[2, 7, 9, 11, 3]])
    padded = paddle.to_tensor([[2, 7, 9, 11, 3, 0, 0]])
    mask = paddle.to_tensor([[1, 1, 1, 1, 1, 0, 0]])
    hidden = model.electra(ids)
    expected = model.classifier(hidden.mean(axis=1))
    np.testing.assert_allclose(model(ids).numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(model(padded, attention_mask=mask).numpy(), expected.numpy(), atol=1e-5)
    model.save_pretrained(str(tmp_path / "m"))
    assert json.load(open(tmp_path / "m" / "config.json"))["classifier_pooling"] == "mean"
    again = ElectraForSequenceClassification.from_pretrained(str(tmp_path / "m"))
    again.eval()
    assert again.pooling == "mean"
    np.testing.assert_allclose(again(ids).numpy(), expected.numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="pooling must be one of cls, mean, got 'max'"):
        ElectraForSequenceClassification(TINY, num_labels=3, pooling="max")

"""HF Electra (safetensors and pytorch_model.bin) -> paddle-electra: parity with transformers, the
restricted unpickler, and the errors bad input gets."""
import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from paddle_electra.io import CheckpointError, load_tensors
from paddle_electra.conversion.hf import convert_hf
from paddle_electra.io.torch_pickle import UnsafePickleError, load_torch_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, E, H, G = 2000, 128, 256, 64
TOL = 1e-5


def _perturb(model, torch, seed):
    # HF initialises LayerNorm to 1/0 and biases to 0; random values test those mappings too
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A random HF discriminator (E=128 != H=256) and generator (G=64) sharing embeddings, each saved
    as safetensors and as pytorch_model.bin."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=V, embedding_size=E, num_hidden_layers=2, max_position_embeddings=64,
                  layer_norm_eps=1e-12, hidden_act="gelu")
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        hidden_size=H, num_attention_heads=4, intermediate_size=4 * H, **common)).eval()
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        hidden_size=G, num_attention_heads=1, intermediate_size=4 * G, **common)).eval()
    _perturb(disc, torch, 1)
    _perturb(gen, torch, 2)
    gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
    assert gen.generator_lm_head.weight is gen.electra.embeddings.word_embeddings.weight  # still tied
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, model in (("disc", disc), ("gen", gen)):
        for fmt, safe in (("st", True), ("bin", False)):
            d = str(root / f"{name}_{fmt}")
            model.save_pretrained(d, safe_serialization=safe)
            dirs[name, fmt] = d
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, size=(2, 16))
    mask = np.ones_like(ids)
    mask[1, 11:] = 0
    ids[1, 11:] = 0
    types = np.zeros_like(ids)
    types[:, 8:] = 1
    t = {k: torch.tensor(v) for k, v in dict(input_ids=ids, attention_mask=mask, token_type_ids=types).items()}
    with torch.no_grad():
        ref = dict(disc_logits=disc(**t).logits.numpy(),
                   disc_hidden=disc.electra(**t).last_hidden_state.numpy(),
                   gen_logits=gen(**t).logits.numpy(),
                   gen_hidden=gen.electra(**t).last_hidden_state.numpy())
    return dict(dirs=dirs, root=root, inputs=dict(input_ids=ids, attention_mask=mask, token_type_ids=types),
                ref=ref, torch=torch, transformers=transformers, disc=disc, gen=gen)


def _paddle_inputs(inputs):
    import paddle
    return dict(input_ids=paddle.to_tensor(inputs["input_ids"]), token_type_ids=paddle.to_tensor(inputs["token_type_ids"]),
                attention_mask=paddle.to_tensor(inputs["attention_mask"]))


def _maxdiff(a, b):
    assert a.shape == b.shape
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.mark.parametrize("disc_fmt,gen_fmt", [("st", "bin"), ("bin", "st")])
def test_pretraining_dir_matches_hf(hf, tmp_path, disc_fmt, gen_fmt):
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator, ElectraModel
    out = convert_hf(hf["dirs"]["disc", disc_fmt], str(tmp_path / "out"), generator_dir=hf["dirs"]["gen", gen_fmt])
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "generator.safetensors", "generator_config.json",
                                       "model.safetensors", "vocab.txt"]
    x, ref = _paddle_inputs(hf["inputs"]), hf["ref"]
    disc = ElectraDiscriminator.from_pretrained(out).eval()
    gen = ElectraGenerator.from_pretrained(out).eval()
    backbone = ElectraModel.from_pretrained(out).eval()
    both = ElectraForPreTraining.from_pretrained(out).eval()
    diffs = {"disc_logits": _maxdiff(disc(**x).numpy(), ref["disc_logits"]),
             "disc_hidden": _maxdiff(backbone(**x).numpy(), ref["disc_hidden"]),
             "gen_logits": _maxdiff(gen(**x).numpy(), ref["gen_logits"]),
             "gen_hidden": _maxdiff(gen.electra(**x).numpy(), ref["gen_hidden"])}
    g_logits, d_logits = both(**x)
    diffs["pretraining_gen"] = _maxdiff(g_logits.numpy(), ref["gen_logits"])
    diffs["pretraining_disc"] = _maxdiff(d_logits.numpy(), ref["disc_logits"])
    print(f"max abs diff vs HF ({disc_fmt}/{gen_fmt}):", json.dumps(diffs))
    assert max(diffs.values()) < TOL, diffs


def test_standalone_generator_and_backbone(hf, tmp_path):
    from paddle_electra.modeling import ElectraGenerator, ElectraModel
    x, ref = _paddle_inputs(hf["inputs"]), hf["ref"]
    gen = ElectraGenerator.from_pretrained(convert_hf(hf["dirs"]["gen", "bin"], str(tmp_path / "g"))).eval()
    assert _maxdiff(gen(**x).numpy(), ref["gen_logits"]) < TOL
    # a bare HF ElectraModel (names without the `electra.` prefix)
    bare = str(tmp_path / "bare_hf")
    hf["disc"].electra.save_pretrained(bare)
    model = ElectraModel.from_pretrained(convert_hf(bare, str(tmp_path / "bare"))).eval()
    assert _maxdiff(model(**x).numpy(), ref["disc_hidden"]) < TOL


def test_discriminator_only_and_inferred_embedding_size(hf, tmp_path):
    from paddle_electra.modeling import ElectraDiscriminator
    src = tmp_path / "disc"
    os.makedirs(src)
    for f in os.listdir(hf["dirs"]["disc", "st"]):
        with open(os.path.join(hf["dirs"]["disc", "st"], f), "rb") as a, open(src / f, "wb") as b:
            b.write(a.read())
    cfg = json.loads((src / "config.json").read_text())
    del cfg["embedding_size"]  # read off the word_embeddings shape instead
    (src / "config.json").write_text(json.dumps(cfg))
    out = convert_hf(str(src), str(tmp_path / "out"))
    assert json.loads(open(os.path.join(out, "config.json")).read())["embedding_size"] == E
    model = ElectraDiscriminator.from_pretrained(out).eval()
    assert _maxdiff(model(**_paddle_inputs(hf["inputs"])).numpy(), hf["ref"]["disc_logits"]) < TOL


def _copy_dir(src, dst):
    os.makedirs(dst)
    for f in os.listdir(src):
        with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
            b.write(a.read())
    return str(dst)


def test_shape_mismatch_names_file_tensor_and_shapes(hf, tmp_path):
    src = _copy_dir(hf["dirs"]["disc", "st"], tmp_path / "disc")
    cfg = json.load(open(os.path.join(src, "config.json")))
    cfg["intermediate_size"] = 512
    json.dump(cfg, open(os.path.join(src, "config.json"), "w"))
    with pytest.raises(CheckpointError) as e:
        convert_hf(src, str(tmp_path / "out"))
    msg = str(e.value)
    assert "model.safetensors" in msg and "electra.encoder.layer.0.intermediate.dense.weight" in msg
    assert "(256, 1024)" in msg and "(256, 512)" in msg
    assert not os.path.exists(tmp_path / "out") and os.listdir(tmp_path) == ["disc"]


def test_untied_lm_head_and_unshared_embeddings_are_errors(hf, tmp_path):
    from safetensors.numpy import save_file
    gen = _copy_dir(hf["dirs"]["gen", "st"], tmp_path / "gen")
    w = load_tensors(os.path.join(gen, "model.safetensors"))
    w["generator_lm_head.weight"] = w["electra.embeddings.word_embeddings.weight"] + 1
    save_file(w, os.path.join(gen, "model.safetensors"))
    with pytest.raises(CheckpointError, match="generator_lm_head.weight .*not tied"):
        convert_hf(gen, str(tmp_path / "out"))
    gen2 = _copy_dir(hf["dirs"]["gen", "st"], tmp_path / "gen2")
    w = load_tensors(os.path.join(gen2, "model.safetensors"))
    w["electra.embeddings.LayerNorm.bias"] = w["electra.embeddings.LayerNorm.bias"] + 1e-3
    save_file(w, os.path.join(gen2, "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"electra.embeddings.LayerNorm.bias differs"):
        convert_hf(hf["dirs"]["disc", "st"], str(tmp_path / "out"), generator_dir=gen2)
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(CheckpointError, match="must be the discriminator"):
        convert_hf(hf["dirs"]["gen", "st"], str(tmp_path / "out"), generator_dir=hf["dirs"]["gen", "st"])


def test_bin_converts_where_torch_cannot_be_imported(hf, tmp_path):
    ref = convert_hf(hf["dirs"]["disc", "st"], str(tmp_path / "ref"), generator_dir=hf["dirs"]["gen", "st"])
    out = str(tmp_path / "nt")
    code = ("import sys; sys.modules['torch'] = None\n"  # `import torch` now raises ImportError
            "from paddle_electra.conversion.hf import convert_hf\n"
            f"convert_hf({hf['dirs']['disc', 'bin']!r}, {out!r}, generator_dir={hf['dirs']['gen', 'bin']!r})\n"
            "assert sys.modules['torch'] is None\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("model.safetensors", "generator.safetensors"):
        a, b = load_tensors(os.path.join(ref, f)), load_tensors(os.path.join(out, f))
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_unpickler_matches_torch_on_views_dtypes_and_legacy_format(hf, tmp_path):
    torch = hf["torch"]
    big = torch.arange(120.0).reshape(10, 12)
    sd = collections.OrderedDict(
        view=big[2:5, 1::3], transposed=big.t(), whole=big, half=torch.randn(3, 4).half(),
        bf16=torch.randn(5).bfloat16(), long=torch.arange(7), empty=torch.zeros(0, 3), scalar=torch.tensor(3.0),
        param=torch.nn.Parameter(torch.randn(2, 2)))
    for legacy in (False, True):
        path = str(tmp_path / f"sd_{legacy}.bin")
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        got = load_torch_state_dict(path)
        assert list(got) == list(sd)
        for k, v in sd.items():
            want = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
            np.testing.assert_array_equal(got[k], want, err_msg=f"{k} (legacy={legacy})")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(str(marker))}, protocol=2)
    zpath = tmp_path / "evil_zip.bin"
    with zipfile.ZipFile(zpath, "w") as zf:  # the layout torch.save writes
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    raw = tmp_path / "evil_legacy.bin"
    raw.write_bytes(payload)  # the legacy layout starts with a pickle too
    for path in (zpath, raw):
        with pytest.raises(UnsafePickleError) as e:
            load_torch_state_dict(str(path))
        assert f"{os.system.__module__}.system" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    # through the converter: the .bin of an HF folder is never loaded with plain pickle
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(zpath.read_bytes())
    (folder / "config.json").write_text("{}")
    with pytest.raises(UnsafePickleError):
        convert_hf(str(folder), str(tmp_path / "out"))
    assert not marker.exists() and not (tmp_path / "out").exists()


def _u(s):  # pickle BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def test_unpickler_rejects_out_of_bounds_tensor(tmp_path):
    # hand-assembled pickle opcodes: {"w": _rebuild_tensor_v2(storage of 4 floats, offset 2, size (3,),
    # stride (1,), False, OrderedDict())}: the tensor reaches past its storage, and as_strided
    # would read foreign memory if the reader trusted it
    storage = b"(" + _u("storage") + b"ctorch\nFloatStorage\n" + _u("0") + _u("cpu") + b"K\x04tQ"
    payload = (b"\x80\x02}" + _u("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
               + b"K\x02K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")
    path = tmp_path / "oob.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    with pytest.raises(CheckpointError, match="reaches element 4 of a storage of 4"):
        load_torch_state_dict(str(path))
    # the same file with offset 1 is in bounds and reads elements 1..3
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload.replace(b"tQK\x02", b"tQK\x01"))
        zf.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    np.testing.assert_array_equal(load_torch_state_dict(str(path))["w"], [1, 2, 3])


def _legacy_bin(main_pickle: bytes, keys=b"\x80\x02]q\x00X\x01\x00\x00\x000a.", data=b"") -> bytes:
    # the legacy torch.save layout: magic, protocol, system info, the main pickle, the storage keys, data
    head = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2) \
        + pickle.dumps({"little_endian": True}, protocol=2)
    return head + main_pickle + keys + data


def _tensor_pickle(numel_op: bytes, size=b"K\x02\x85", stride=b"K\x01\x85", storage_class=b"FloatStorage"):
    storage = b"(" + _u("storage") + b"ctorch\n" + storage_class + b"\n" + _u("0") + _u("cpu") + numel_op + b"tQ"
    return (b"\x80\x02}" + _u("w") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage
            + b"K\x00" + size + stride + b"\x89ccollections\nOrderedDict\n)RtRs.")


def test_bin_reader_checks_sizes_before_allocating(tmp_path):
    # a few hundred bytes asking for 2**40 floats (4 TiB): refused from the file size, nothing allocated
    path = tmp_path / "bomb_legacy.bin"
    path.write_bytes(_legacy_bin(_tensor_pickle(b"\x8a\x06\x00\x00\x00\x00\x00\x01")))
    assert path.stat().st_size < 600
    with pytest.raises(CheckpointError, match="does not fit in the .* bytes left in the file"):
        load_torch_state_dict(str(path))
    # a zip whose storage record claims more than it holds
    zpath = tmp_path / "bomb_zip.bin"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle(b"\x8a\x06\x00\x00\x00\x00\x00\x01"))
        zf.writestr("archive/data/0", np.zeros(2, "<f4").tobytes())
    with pytest.raises(CheckpointError, match="has 8 bytes, the pickle asks for 4398046511104"):
        load_torch_state_dict(str(zpath))
    # a deflated record that would inflate a thousandfold (a small zip reaching gigabytes)
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle(b"J\x00\x00\x40\x01", size=b"J\x00\x00\x40\x01\x85"))
        zf.writestr("archive/data/0", bytes(4 * 0x01400000))  # 80 MiB of zeros
    assert zpath.stat().st_size < 200_000
    with pytest.raises(CheckpointError, match="would inflate .* refusing"):
        load_torch_state_dict(str(zpath))
    # a stride-0 view with 10**12 elements over a storage of 2
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle(b"K\x02", size=b"J\x40\x42\x0f\x00J\x40\x42\x0f\x00\x86",
                                                       stride=b"K\x00K\x00\x86"))
        zf.writestr("archive/data/0", np.zeros(2, "<f4").tobytes())
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        load_torch_state_dict(str(zpath))


def test_bin_reader_keeps_no_shared_state(tmp_path):
    # BUILD on the storage class the pickle names tries to turn FloatStorage into float16 for the
    # whole process; it is refused, and a valid file read afterwards still loads float32
    evil = (b"\x80\x02ctorch\nFloatStorage\n}" + _u("_dtype") + _u("<f2") + b"s}" + _u("dtype") + _u("<f2")
            + b"s\x86b0}.")
    path = tmp_path / "evil.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", evil)
    with pytest.raises(UnsafePickleError, match="refusing BUILD"):
        load_torch_state_dict(str(path))
    good = tmp_path / "good.bin"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("archive/data.pkl", _tensor_pickle(b"K\x02"))
        zf.writestr("archive/data/0", np.array([1.5, -2.0], "<f4").tobytes())
    w = load_torch_state_dict(str(good))["w"]
    assert w.dtype == np.float32 and w.tolist() == [1.5, -2.0]


def test_cli_script(hf, tmp_path):
    from paddle_electra.modeling import ElectraForPreTraining
    script = os.path.join(ROOT, "convert", "convert_hf_checkpoint.py")
    out = str(tmp_path / "cli")
    r = subprocess.run([sys.executable, script, "--input", hf["dirs"]["disc", "bin"], "--generator",
                        hf["dirs"]["gen", "st"], "--output", out], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr[-2000:]
    ElectraForPreTraining.from_pretrained(out)


def test_paddlenlp_export_matches(tmp_path):
    """export paddlenlp output loads in PaddleNLP 2.8 and computes what our models compute."""
    pytest.importorskip("paddlenlp")
    import paddle
    import paddlenlp.transformers as nlp
    from paddle_electra.cli import main
    from paddle_electra.config import ElectraConfig
    from paddle_electra.modeling import ElectraDiscriminator, ElectraForPreTraining, ElectraGenerator, ElectraModel
    paddle.seed(0)
    disc_cfg = ElectraConfig(vocab_size=500, embedding_size=64, hidden_size=128, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=256, max_position_embeddings=64)
    model = ElectraForPreTraining(disc_cfg, disc_cfg.replace(hidden_size=32, num_attention_heads=1,
                                                             intermediate_size=128))
    with paddle.no_grad():  # non-trivial LayerNorm and bias values
        for p in model.parameters():
            p.set_value(p + 0.05 * paddle.randn(p.shape))
    src = model.save_pretrained(str(tmp_path / "src"))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 500, size=(2, 12))
    ids[1, 8:] = 0  # padding: PaddleNLP builds its mask from pad_token_id when none is given
    x = dict(input_ids=paddle.to_tensor(ids), token_type_ids=paddle.to_tensor((np.arange(12) >= 6).astype("int64")[None].repeat(2, 0)))
    mask = paddle.to_tensor((ids != 0).astype("int64"))
    diffs = {}
    for kind, ours, theirs in (("backbone", ElectraModel, nlp.ElectraModel),
                               ("discriminator", ElectraDiscriminator, nlp.ElectraDiscriminator),
                               ("generator", ElectraGenerator, nlp.ElectraGenerator)):
        out = str(tmp_path / kind)
        assert main(["export", "paddlenlp", "--input", src, "--output", out, "--model", kind]) == 0
        assert sorted(os.listdir(out)) == ["config.json", "model_state.pdparams", "tokenizer_config.json", "vocab.txt"]
        a = ours.from_pretrained(src).eval()
        b = theirs.from_pretrained(out).eval()
        # PaddleNLP's TransformerEncoderLayer defaults to epsilon 1e-5; its _init_weights resets it
        assert {m._epsilon for m in b.sublayers() if isinstance(m, paddle.nn.LayerNorm)} == {1e-12}
        want = a(**x, attention_mask=mask).numpy()
        for name, m in (("pad-mask", None), ("2d-mask", mask)):
            got = b(**x, attention_mask=m)
            diffs[f"{kind}/{name}"] = _maxdiff((got[0] if isinstance(got, (tuple, list)) else got).numpy(), want)
    print("max abs diff vs PaddleNLP:", json.dumps(diffs))
    assert max(diffs.values()) < TOL, diffs
    nlp.ElectraTokenizer.from_pretrained(str(tmp_path / "backbone"))  # the vocab loads too


@pytest.mark.parametrize("hf_class,ours,labels", [
    ("ElectraForSequenceClassification", "ElectraForSequenceClassification", 3),
    ("ElectraForTokenClassification", "ElectraForTokenClassification", 5),
    ("ElectraForQuestionAnswering", "ElectraForQuestionAnswering", 2),
])
def test_task_heads_match_transformers(hf, tmp_path, hf_class, ours, labels):
    import paddle_electra
    torch, transformers = hf["torch"], hf["transformers"]
    torch.manual_seed(3)
    cfg = transformers.ElectraConfig(vocab_size=V, embedding_size=E, hidden_size=H, num_attention_heads=4,
                                     intermediate_size=4 * H, num_hidden_layers=2, max_position_embeddings=64,
                                     num_labels=labels, id2label={i: f"L{i}" for i in range(labels)},
                                     label2id={f"L{i}": i for i in range(labels)})
    model = getattr(transformers, hf_class)(cfg).eval()
    _perturb(model, torch, 4)
    src = str(tmp_path / "hf")
    model.save_pretrained(src, safe_serialization=False)
    out = convert_hf(src, str(tmp_path / "ours"), parity=True)
    t = {k: torch.tensor(v) for k, v in hf["inputs"].items()}
    with torch.no_grad():
        r = model(**t)
    ref = [r.start_logits.numpy(), r.end_logits.numpy()] if hf_class.endswith("Answering") else [r.logits.numpy()]
    m = getattr(paddle_electra, ours).from_pretrained(out).eval()
    assert m.load_report.complete
    got = m(**_paddle_inputs(hf["inputs"]))
    got = [g.numpy() for g in (got if isinstance(got, (tuple, list)) else [got])]
    mask = hf["inputs"]["attention_mask"].astype(bool)
    for a, b in zip(ref, got):
        if a.ndim >= 2 and a.shape[1] == mask.shape[1]:  # per-token outputs: the real tokens
            a, b = a[mask], b[mask]
        assert _maxdiff(a, b) < TOL
    if ours != "ElectraForQuestionAnswering":
        assert m.labels == [f"L{i}" for i in range(labels)]
    card = open(os.path.join(out, "README.md"), encoding="utf-8").read()
    assert f"| parity (discriminator) | max abs difference" in card and f"transformers {transformers.__version__}" in card
    measured = float(card.split("max abs difference ")[1].split(" ")[0])
    assert measured < TOL


def test_multiple_choice_head_is_refused_by_name(hf, tmp_path):
    transformers = hf["transformers"]
    cfg = transformers.ElectraConfig(vocab_size=V, embedding_size=E, hidden_size=H, num_attention_heads=4,
                                     intermediate_size=4 * H, num_hidden_layers=1, max_position_embeddings=64)
    transformers.ElectraForMultipleChoice(cfg).save_pretrained(str(tmp_path / "mc"))
    with pytest.raises(CheckpointError, match="ElectraForMultipleChoice .* has no counterpart"):
        convert_hf(str(tmp_path / "mc"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_known_wrong_legal_small_generator_config_is_patched(hf, tmp_path, caplog):
    # a generator whose config.json gives the discriminator's widths (256 / 1024 / 4 heads) while its
    # weights are the 64-wide generator's, as hfl/chinese-legal-electra-small-generator's does
    import shutil
    from paddle_electra.modeling import ElectraGenerator
    transformers = hf["transformers"]
    cfg = transformers.ElectraConfig(vocab_size=V, embedding_size=E, hidden_size=64, num_attention_heads=1,
                                     intermediate_size=256, num_hidden_layers=2, max_position_embeddings=64)
    src = tmp_path / "chinese-legal-electra-small-generator"
    transformers.ElectraForMaskedLM(cfg).save_pretrained(str(src))
    d = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**d, "hidden_size": 256, "intermediate_size": 1024,
                                                 "num_attention_heads": 4}))
    out = convert_hf(str(src), str(tmp_path / "out"))
    assert "patched the known error of hfl/chinese-legal-electra-small-generator" in caplog.text
    g = ElectraGenerator.from_pretrained(out)
    assert (g.config.hidden_size, g.config.intermediate_size, g.config.num_attention_heads) == (64, 256, 1)
    assert "patched" in (tmp_path / "out" / "README.md").read_text()
    # weights the fix does not fit are not "patched": the shapes are reported
    other = tmp_path / "other"
    transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        vocab_size=V, embedding_size=E, hidden_size=32, num_attention_heads=1, intermediate_size=128,
        num_hidden_layers=2, max_position_embeddings=64)).save_pretrained(str(other))
    shutil.copyfile(src / "config.json", other / "config.json")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        convert_hf(str(other), str(tmp_path / "out2"))

"""The TF checkpoint converter: the reader against TF's own, the converted models against HF's
TF loader (transformers 4.x), the reader without TF, and bad inputs.

Checkpoints are written here with TensorFlow in the released layout (tf.compat.v1 variables with
the released names and shapes, Adam slots and global_step, saved by tf.compat.v1.train.Saver).
Their names are spelled out below from docs/design.md's table, independently of
paddle_electra.conversion.tf, and HF's loader is a third reading of the same names.

Run as a script to write a full-size checkpoint of a registered variant (for timing):
    python tests/test_conversion_tf.py /tmp/electra_small_tf/electra_small --variant chinese-electra-small
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# 2-layer versions of the released shapes (tiny vocab): `small` has E != H and G = H/4,
# `base_like` has E == H (no discriminator embeddings_project; the generator still has one).
LAYOUTS = {
    "small": dict(vocab_size=200, embedding_size=128, hidden_size=256, num_hidden_layers=2,
                  num_attention_heads=4, intermediate_size=1024, generator_hidden_size=64),
    "base_like": dict(vocab_size=150, embedding_size=128, hidden_size=128, num_hidden_layers=1,
                      num_attention_heads=2, intermediate_size=512, generator_hidden_size=64),
}


# --- the released layout, spelled out -----------------------------------------------------------
def released_layout(vocab_size, embedding_size, hidden_size, num_hidden_layers, intermediate_size,
                    generator_hidden_size: Optional[int], max_position_embeddings=512, type_vocab_size=2,
                    **_) -> Dict[str, List[int]]:
    """TF variable name -> shape of a released checkpoint's weights (docs/design.md's table)."""
    V, E, H, L, I, G = vocab_size, embedding_size, hidden_size, num_hidden_layers, intermediate_size, \
        generator_hidden_size
    v = {"electra/embeddings/word_embeddings": [V, E],
         "electra/embeddings/position_embeddings": [max_position_embeddings, E],
         "electra/embeddings/token_type_embeddings": [type_vocab_size, E],
         "electra/embeddings/LayerNorm/gamma": [E], "electra/embeddings/LayerNorm/beta": [E]}

    def dense(name, n_in, n_out):
        v[f"{name}/kernel"], v[f"{name}/bias"] = [n_in, n_out], [n_out]

    def layer_norm(name, n):
        v[f"{name}/gamma"], v[f"{name}/beta"] = [n], [n]

    def backbone(scope, h, inter):
        if E != h:
            dense(f"{scope}/embeddings_project", E, h)
        for i in range(L):
            p = f"{scope}/encoder/layer_{i}"
            for q in ("query", "key", "value"):
                dense(f"{p}/attention/self/{q}", h, h)
            dense(f"{p}/attention/output/dense", h, h)
            layer_norm(f"{p}/attention/output/LayerNorm", h)
            dense(f"{p}/intermediate/dense", h, inter)
            dense(f"{p}/output/dense", inter, h)
            layer_norm(f"{p}/output/LayerNorm", h)

    backbone("electra", H, I)
    dense("discriminator_predictions/dense", H, H)
    dense("discriminator_predictions/dense_1", H, 1)
    if G:
        backbone("generator", G, 4 * G)
        dense("generator_predictions/dense", G, E)
        layer_norm("generator_predictions/LayerNorm", E)
        v["generator_predictions/output_bias"] = [V]
    return v


def _tf():
    return pytest.importorskip("tensorflow")


def build_graph(tf, layout: Dict[str, List[int]], adam=True):
    """Variables of the layout (+ Adam slots, global_step) in the current graph, random values."""
    c = tf.compat.v1
    variables = {}
    for name, shape in layout.items():
        leaf = name.split("/")[-1]
        if leaf == "gamma":  # not 1: a gamma/beta mix-up must show
            init = c.random_normal_initializer(1.0, 0.1)
        elif leaf in ("beta", "bias", "output_bias"):
            init = c.random_normal_initializer(0.0, 0.1)
        else:
            init = c.truncated_normal_initializer(stddev=0.08)
        variables[name] = c.get_variable(name, shape, tf.float32, init)
        if adam:  # ELECTRA's AdamWeightDecayOptimizer slots
            for slot in ("adam_m", "adam_v"):
                c.get_variable(f"{name}/{slot}", shape, tf.float32, c.random_uniform_initializer(0.0, 0.01))
    step = c.get_variable("global_step", [], tf.int64, c.constant_initializer(1000000))
    return variables, step


def write_checkpoints(directory: str, layout: Dict[str, List[int]], seed=0, extras=False) -> Dict[str, str]:
    """Write the released layout with TF; with `extras`, also broken variants of it. Returns
    kind -> checkpoint prefix."""
    tf = _tf()
    c = tf.compat.v1
    prefixes = {}
    for kind in ("full", "missing", "unexpected", "bad_shape", "disc_only"):
        os.makedirs(os.path.join(directory, kind), exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        c.set_random_seed(seed)
        variables, _ = build_graph(tf, layout)
        if extras:
            d_last = "discriminator_predictions/dense_1/kernel"
            wrong = c.get_variable("wrong_shape", [layout[d_last][0], 2], tf.float32, c.random_normal_initializer())
            pooler = c.get_variable("pooler", [layout["electra/embeddings/LayerNorm/gamma"][0]] * 2, tf.float32,
                                    c.random_normal_initializer())
        with c.Session(graph=graph) as sess:
            sess.run(c.global_variables_initializer())
            base = {v.op.name: v for v in c.global_variables() if v.op.name not in ("wrong_shape", "pooler")}
            full = os.path.join(directory, "full", "electra_small")
            prefixes["full"] = c.train.Saver(base).save(sess, full)
            if extras:
                dropped = "electra/encoder/layer_1/attention/self/key/bias"
                kinds = {"missing": {k: v for k, v in base.items() if k != dropped},
                         "unexpected": {**base, "electra/pooler/dense/kernel": pooler},
                         "bad_shape": {**base, d_last: wrong},
                         "disc_only": {k: v for k, v in base.items() if not k.startswith("generator")}}
                for kind, var_list in kinds.items():
                    prefixes[kind] = c.train.Saver(var_list).save(
                        sess, os.path.join(directory, kind, "electra_small"), write_meta_graph=False)
    return prefixes


def configs_for(spec) -> tuple:
    from paddle_electra.config import ElectraConfig, generator_config_for
    disc = ElectraConfig(**{k: v for k, v in spec.items() if k != "generator_hidden_size"})
    return disc, generator_config_for(disc, spec["generator_hidden_size"])


def write_vocab(path, n):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(["[PAD]\n"] + [f"[unused{i}]\n" for i in range(1, 100)] + ["[UNK]\n", "[CLS]\n", "[SEP]\n",
                         "[MASK]\n"] + [f"t{i}\n" for i in range(n - 104)]))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """layout name -> dict(prefixes, configs as files, vocab)."""
    out = {}
    for name, spec in LAYOUTS.items():
        d = tmp_path_factory.mktemp(f"tf_{name}")
        layout = released_layout(**spec)
        prefixes = write_checkpoints(str(d), layout, seed=1, extras=(name == "small"))
        disc, gen = configs_for(spec)
        # HF-style config files as HFL ships them; the discriminator one without embedding_size
        dj = {k: v for k, v in disc.to_dict().items() if k != "embedding_size"}
        with open(d / "discriminator.json", "w") as f:
            json.dump(dj, f)
        gen.to_json_file(str(d / "generator.json"))
        vocab = d / "full" / "vocab.txt"  # beside the checkpoint, as in HFL's zips
        write_vocab(vocab, spec["vocab_size"])
        out[name] = dict(prefixes=prefixes, disc=str(d / "discriminator.json"), gen=str(d / "generator.json"),
                         config=(disc, gen), layout=layout, dir=d)
    return out


# --- the name table ---------------------------------------------------------------------------------
@pytest.mark.parametrize("variant,count", [("chinese-electra-small", 402), ("chinese-electra-small-ex", 784),
                                           ("chinese-electra-base", 400), ("chinese-electra-large", 784)])
def test_released_variable_counts(variant, count):
    from paddle_electra.config import get_variant
    from paddle_electra.conversion.tf import expected_variables
    v = get_variant(variant)
    table = expected_variables(v.discriminator, v.generator)
    c = v.discriminator
    spelled = released_layout(c.vocab_size, c.embedding_size, c.hidden_size, c.num_hidden_layers,
                              c.intermediate_size, v.generator.hidden_size)
    assert len(table) == count == len(spelled)
    assert {k: list(s) for k, (s, _) in table.items()} == spelled
    # each of our tensors comes from one TF variable; the embeddings block goes to both models
    targets = [t for _, ts in table.values() for t in ts]
    assert len(targets) == len(set(targets))
    assert sum(len(ts) == 2 for _, ts in table.values()) == 5


def test_full_size_small_graph_has_402_weights():
    """The full small layout as TF variables (not written): everything but training state is used."""
    tf = _tf()
    from paddle_electra.config import get_variant
    from paddle_electra.conversion.tf import expected_variables, is_training_state
    v = get_variant("chinese-electra-small")
    c = v.discriminator
    layout = released_layout(c.vocab_size, c.embedding_size, c.hidden_size, c.num_hidden_layers,
                             c.intermediate_size, v.generator.hidden_size)
    with tf.Graph().as_default():
        build_graph(tf, layout, adam=False)  # (the Adam slots' skipping is tested on the tiny checkpoints)
        names = {x.op.name: x.shape.as_list() for x in tf.compat.v1.global_variables()}
    weights = {k: s for k, s in names.items() if not is_training_state(k)}
    assert len(names) == 402 + 1 and len(weights) == 402
    assert weights == {k: list(s) for k, (s, _) in expected_variables(v.discriminator, v.generator).items()}


# --- the reader ------------------------------------------------------------------------------------
def test_reader_matches_tensorflow(ckpts):
    tf = _tf()
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint
    prefix = ckpts["small"]["prefixes"]["full"]
    with TFCheckpoint(prefix) as ckpt:
        assert ckpt.shapes() == {n: tuple(s) for n, s in tf.train.list_variables(prefix)}
        for name in ckpt.names():  # weights, Adam slots, global_step (int64): bit for bit
            ours, ref = ckpt.read(name), tf.train.load_variable(prefix, name)
            assert ours.dtype == ref.dtype and ours.shape == ref.shape and np.array_equal(ours, ref), name


def test_reader_dtypes_and_shards(tmp_path):
    """float16 / bfloat16 / float64 / int32 / int64 / bool / scalars, and a checkpoint in 2 shards."""
    tf = _tf()
    c = tf.compat.v1
    rng = np.random.default_rng(0)
    values = {"a/f16": rng.normal(size=(3, 5)).astype(np.float16), "a/f64": rng.normal(size=(7,)),
              "b/i32": rng.integers(-9, 9, (2, 2, 2)).astype(np.int32), "b/i64": np.int64(-123456789012),
              "c/bool": np.array([True, False, True]), "c/empty": np.zeros((0, 4), np.float32),
              "d/bf16": rng.normal(size=(4, 3)).astype(np.float32)}
    graph = tf.Graph()
    with graph.as_default():
        for i, (name, value) in enumerate(sorted(values.items())):
            with tf.device(f"/cpu:{i % 2}"):  # two devices -> a sharded Saver writes two data files
                init = tf.constant(value)
                c.get_variable(name, initializer=tf.cast(init, tf.bfloat16) if name == "d/bf16" else init)
        config = c.ConfigProto(device_count={"CPU": 2})
        with c.Session(graph=graph, config=config) as sess:
            sess.run(c.global_variables_initializer())
            prefix = c.train.Saver(sharded=True).save(sess, str(tmp_path / "m"))
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint
    with TFCheckpoint(str(tmp_path)) as ckpt:
        assert ckpt.num_shards == 2 and {e.shard_id for e in ckpt.entries.values()} == {0, 1}
        for name, value in values.items():
            got = ckpt.read(name)
            if name == "d/bf16":  # widened to float32; bfloat16 keeps the top 16 bits
                ref = tf.train.load_variable(prefix, name).astype(np.float32)
                assert got.dtype == np.float32 and np.array_equal(got, ref)
                assert np.allclose(got, value, rtol=1e-2)
            else:
                assert got.dtype == np.asarray(value).dtype and np.array_equal(got, value), name


def test_folder_without_checkpoint_file_and_prefix_forms(ckpts, tmp_path):
    """HFL's zips hold electra_small.{index,data,meta} and no `checkpoint` file."""
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint, TFCheckpointError, resolve_prefix
    src = os.path.dirname(ckpts["small"]["prefixes"]["full"])
    zipped = tmp_path / "chinese_electra_small_L-12_H-256_A-4"
    shutil.copytree(src, zipped)
    os.remove(zipped / "checkpoint")
    prefix = str(zipped / "electra_small")
    for form in (str(zipped), prefix, prefix + ".index", prefix + ".meta", prefix + ".data-00000-of-00001"):
        assert resolve_prefix(form) == prefix
    # a `checkpoint` file with an absolute path from another machine: found by base name
    with open(zipped / "checkpoint", "w") as f:
        f.write('model_checkpoint_path: "/home/someone/models/electra_small"\n')
    assert TFCheckpoint(str(zipped)).prefix == prefix
    shutil.copy(zipped / "electra_small.index", zipped / "other.index")
    os.remove(zipped / "checkpoint")
    with pytest.raises(TFCheckpointError, match="several checkpoints"):
        resolve_prefix(str(zipped))
    with pytest.raises(TFCheckpointError, match="not found"):
        resolve_prefix(str(tmp_path / "nothing"))
    # a zip that unpacks to a folder (with a Mac's resource-fork files beside the checkpoint)
    nested = tmp_path / "unzipped"
    shutil.copytree(zipped, nested / "electra_180g_small")
    os.remove(nested / "electra_180g_small" / "other.index")
    (nested / "electra_180g_small" / "._electra_small.index").write_bytes(b"\0")
    with pytest.raises(TFCheckpointError, match="found .*electra_180g_small/electra_small: pass that"):
        resolve_prefix(str(nested))
    assert resolve_prefix(str(nested / "electra_180g_small")) == str(nested / "electra_180g_small" / "electra_small")
    (tmp_path / "release.zip").write_bytes(b"PK")
    with pytest.raises(TFCheckpointError, match="unzip it"):
        resolve_prefix(str(tmp_path / "release.zip"))


# --- parity with HF's loader -------------------------------------------------------------------------
def _hf_models(spec, prefix):
    """HF transformers' reading of the TF checkpoint (load_tf_weights_in_electra, 4.x)."""
    os.environ.setdefault("USE_TF", "0")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers.models.electra.modeling_electra import load_tf_weights_in_electra
    from paddle_electra.config import ElectraConfig
    disc, gen = configs_for(spec)
    out = []
    for cfg, cls, which in ((disc, transformers.ElectraForPreTraining, "discriminator"),
                            (gen, transformers.ElectraForMaskedLM, "generator")):
        hf_cfg = transformers.ElectraConfig(**{k: getattr(cfg, k) for k in ElectraConfig.fields()},
                                            attn_implementation="eager")
        torch.manual_seed(0)
        model = cls(hf_cfg).eval()
        load_tf_weights_in_electra(model, hf_cfg, prefix, discriminator_or_generator=which)
        out.append(model)
    return torch, out


def _inputs(vocab_size, seed=0):
    rng = np.random.default_rng(seed)
    B, S = 3, 24
    ids = rng.integers(1, vocab_size, (B, S)).astype(np.int64)
    lengths = [S, 17, 6]  # padding in two rows
    mask = np.array([[1] * n + [0] * (S - n) for n in lengths], np.int64)
    ids = ids * mask
    types = np.array([[0] * (n // 2) + [1] * (S - n // 2) for n in lengths], np.int64) * mask
    return ids, types, mask


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_parity_with_hf(ckpts, layout, tmp_path):
    spec, c = LAYOUTS[layout], ckpts[layout]
    prefix = c["prefixes"]["full"]
    from paddle_electra.conversion.tf import convert_tf_checkpoint
    out = str(tmp_path / "converted")
    summary = convert_tf_checkpoint(os.path.dirname(prefix), out, c["disc"], c["gen"])
    assert summary.converted == len(c["layout"]) and summary.skipped == {"training state": 2 * len(c["layout"]) + 1}
    assert json.load(open(os.path.join(out, "config.json")))["embedding_size"] == spec["embedding_size"]
    from paddle_electra.modeling import ElectraForPreTraining
    ElectraForPreTraining.from_pretrained(out)  # a pretraining dir: both models, shared embeddings equal

    _compare_with_hf(layout, spec, prefix, out)


def _compare_with_hf(label, spec, prefix, out):
    torch, (hf_disc, hf_gen) = _hf_models(spec, prefix)
    import paddle
    from paddle_electra.modeling import ElectraDiscriminator, ElectraGenerator, ElectraModel
    ids, types, mask = _inputs(spec["vocab_size"])
    with torch.no_grad():
        t = [torch.from_numpy(x) for x in (ids, types, mask)]
        ref = {"discriminator logits": hf_disc(input_ids=t[0], token_type_ids=t[1], attention_mask=t[2]).logits,
               "last hidden state": hf_disc.electra(input_ids=t[0], token_type_ids=t[1],
                                                    attention_mask=t[2]).last_hidden_state,
               "generator logits": hf_gen(input_ids=t[0], token_type_ids=t[1], attention_mask=t[2]).logits}
    p = [paddle.to_tensor(x) for x in (ids, types, mask)]
    ours = {}
    for key, cls in (("discriminator logits", ElectraDiscriminator), ("last hidden state", ElectraModel),
                     ("generator logits", ElectraGenerator)):
        model = cls.from_pretrained(out)
        model.eval()
        with paddle.no_grad():
            ours[key] = model(p[0], token_type_ids=p[1], attention_mask=p[2]).numpy()
    for key in ref:
        diff = float(np.abs(ours[key] - ref[key].numpy()).max())
        print(f"{label}: {key} {tuple(ours[key].shape)} max abs diff vs HF {diff:.3g}")
        assert diff <= 1e-5, (key, diff)
    assert np.abs(ref["generator logits"].numpy()).max() > 0.1  # a non-trivial comparison


@pytest.mark.slow
def test_full_size_small_parity_and_time(tmp_path):
    """The full 12-layer small layout (21,128 vocab, generator, Adam slots): convert with the CLI
    and compare with HF. Writing the 156 MB checkpoint with TF takes most of the time."""
    import time
    from paddle_electra.cli import main
    from paddle_electra.config import get_variant
    v = get_variant("chinese-electra-small")
    c = v.discriminator
    layout = released_layout(c.vocab_size, c.embedding_size, c.hidden_size, c.num_hidden_layers,
                             c.intermediate_size, v.generator.hidden_size)
    prefix = write_checkpoints(str(tmp_path / "tf"), layout)["full"]
    out = tmp_path / "converted"
    start = time.perf_counter()
    assert main(["convert", "tf", "--checkpoint", os.path.dirname(prefix), "--model", v.name,
                 "--output", str(out)]) == 0
    print(f"full-size small: convert tf took {time.perf_counter() - start:.2f} s in process")
    spec = dict(vocab_size=c.vocab_size, embedding_size=c.embedding_size, hidden_size=c.hidden_size,
                num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                intermediate_size=c.intermediate_size, generator_hidden_size=v.generator.hidden_size)
    _compare_with_hf("full-size small", spec, prefix, str(out))


# --- no TensorFlow needed ----------------------------------------------------------------------------
def test_converts_without_tensorflow(ckpts, tmp_path):
    """The CLI in a process where `import tensorflow` fails; the result is bit-exact vs TF's reader."""
    tf = _tf()
    c = ckpts["small"]
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # any import of tensorflow now raises ImportError\n"
        "from paddle_electra.cli import main\n"
        f"rc = main(['convert', 'tf', '--checkpoint', {os.path.dirname(c['prefixes']['full'])!r},\n"
        f"           '--discriminator-config', {c['disc']!r}, '--generator-config', {c['gen']!r},\n"
        f"           '--output', {str(out)!r}])\n"
        "assert not [m for m, v in sys.modules.items() if m.split('.')[0] == 'tensorflow' and v is not None]\n"
        "sys.exit(rc)\n")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("converted")]
    assert line and f"converted {len(c['layout'])} variables" in line[0] and "training state" in line[0]
    from paddle_electra.io import load_tensors
    from paddle_electra.conversion.tf import expected_variables
    disc = load_tensors(str(out / "model.safetensors"))
    gen = load_tensors(str(out / "generator.safetensors"))
    prefix = c["prefixes"]["full"]
    for name, (_, targets) in expected_variables(*c["config"]).items():
        ref = tf.train.load_variable(prefix, name)
        for model, key in targets:
            assert np.array_equal((disc if model == "discriminator" else gen)[key], ref), (name, key)
    # the vocab beside the checkpoint was shipped
    assert (out / "vocab.txt").read_text() == (c["dir"] / "full" / "vocab.txt").read_text()


# --- bad input -------------------------------------------------------------------------------------
@pytest.fixture
def existing_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    return out


def _assert_untouched(out):
    assert sorted(os.listdir(out)) == ["keep.txt"] and (out / "keep.txt").read_text() == "earlier result"
    assert not [f for f in os.listdir(out.parent) if f.startswith(".out")]  # no temporary folder left behind


def _convert(c, prefix, out, **kw):
    from paddle_electra.conversion.tf import convert_tf_checkpoint
    kw.setdefault("discriminator_config", c["disc"])
    kw.setdefault("generator_config", c["gen"])
    return convert_tf_checkpoint(prefix, str(out), **kw)


def _copy_full(c, tmp_path):
    src = os.path.dirname(c["prefixes"]["full"])
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst / "electra_small"


@pytest.mark.parametrize("kind,expected", [
    ("missing", [r"not in the checkpoint", r"electra/encoder/layer_1/attention/self/key/bias \[256\]"]),
    ("unexpected", [r"no place for", r"electra/pooler/dense/kernel \[128, 128\]"]),
    ("bad_shape", [r"shape mismatch", r"discriminator_predictions/dense_1/kernel: \[256, 2\] vs \[256, 1\]"]),
])
def test_bad_checkpoints(ckpts, kind, expected, existing_out):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpointError
    c = ckpts["small"]
    with pytest.raises(TFCheckpointError) as e:
        _convert(c, c["prefixes"][kind], existing_out, vocab_file=str(c["dir"] / "full" / "vocab.txt"))
    for pattern in expected + [c["prefixes"][kind]]:
        assert re.search(pattern, str(e.value)), (pattern, str(e.value))
    _assert_untouched(existing_out)


def test_discriminator_only_checkpoint(ckpts, tmp_path, existing_out):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpointError
    c = ckpts["small"]
    vocab = str(c["dir"] / "full" / "vocab.txt")
    with pytest.raises(TFCheckpointError, match="holds no .complete. generator") as e:
        _convert(c, c["prefixes"]["disc_only"], existing_out, vocab_file=vocab)
    assert "generator_predictions/output_bias [200]" in str(e.value)
    _assert_untouched(existing_out)
    s = _convert(c, c["prefixes"]["disc_only"], tmp_path / "d", generator_config=None, vocab_file=vocab)
    assert s.generator_tensors == 0 and not (tmp_path / "d" / "generator.safetensors").exists()


def test_skip_pattern_allows_extra_variables(ckpts, tmp_path):
    c = ckpts["small"]
    s = _convert(c, c["prefixes"]["unexpected"], tmp_path / "out", skip=["electra/pooler/*"],
                 vocab_file=str(c["dir"] / "full" / "vocab.txt"))
    assert s.skipped["--skip"] == 1


def test_truncated_data_file(ckpts, tmp_path, existing_out):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpointError
    c = ckpts["small"]
    prefix = _copy_full(c, tmp_path)
    data = f"{prefix}.data-00000-of-00001"
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(TFCheckpointError, match=r"truncated data file: variable '[^']+' needs bytes") as e:
        _convert(c, str(prefix), existing_out)
    assert data in str(e.value)
    _assert_untouched(existing_out)


def test_corrupt_tensor_bytes(ckpts, tmp_path, existing_out):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpoint, TFCheckpointError
    c = ckpts["small"]
    prefix = _copy_full(c, tmp_path)
    name = "generator/encoder/layer_1/output/dense/kernel"
    entry = TFCheckpoint(str(prefix)).entries[name]
    data = f"{prefix}.data-00000-of-00001"
    with open(data, "r+b") as f:
        f.seek(entry.offset + entry.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(TFCheckpointError, match=f"variable '{name}' fails its crc32c check") as e:
        _convert(c, str(prefix), existing_out)
    assert data in str(e.value)
    _assert_untouched(existing_out)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_index(ckpts, tmp_path, existing_out, damage):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpointError
    c = ckpts["small"]
    prefix = _copy_full(c, tmp_path)
    index = f"{prefix}.index"
    raw = bytearray(open(index, "rb").read())
    raw = raw[: len(raw) - 30] if damage == "truncate" else raw[:100] + bytes([raw[100] ^ 1]) + raw[101:]
    open(index, "wb").write(bytes(raw))
    with pytest.raises(TFCheckpointError, match="index") as e:
        _convert(c, str(prefix), existing_out)
    assert index in str(e.value)
    _assert_untouched(existing_out)


def test_wrong_config(ckpts, tmp_path, existing_out):
    from paddle_electra.conversion.tf_checkpoint import TFCheckpointError
    c = ckpts["small"]
    disc, gen = c["config"]
    bad = tmp_path / "bad.json"
    disc.replace(hidden_size=128, num_attention_heads=2, num_hidden_layers=3).to_json_file(str(bad))
    with pytest.raises(TFCheckpointError) as e:
        _convert(c, c["prefixes"]["full"], existing_out, discriminator_config=str(bad))
    msg = str(e.value)
    assert "electra/encoder/layer_0/attention/self/query/kernel: [256, 256] vs [128, 128]" in msg
    assert "electra/encoder/layer_2/attention/self/query/kernel [128, 128]" in msg  # missing layer
    assert "the checkpoint's electra has 2 layers, the config says num_hidden_layers=3" in msg
    _assert_untouched(existing_out)


def test_vocab_size_mismatch(ckpts, existing_out):
    from paddle_electra.config import ConfigError
    from paddle_electra.tokenizer import bundled_vocab_path
    c = ckpts["small"]
    with pytest.raises(ConfigError, match=r"vocab.txt has 21128 tokens, but the config's vocab_size is 200"):
        _convert(c, c["prefixes"]["full"], existing_out, vocab_file=bundled_vocab_path())
    _assert_untouched(existing_out)


def test_cli_discriminator_only_and_errors(ckpts, tmp_path, capsys):
    from paddle_electra.cli import main
    c = ckpts["small"]
    ckpt_dir = os.path.dirname(c["prefixes"]["full"])
    out = tmp_path / "disc"
    assert main(["convert", "tf", "--checkpoint", ckpt_dir, "--discriminator-config", c["disc"],
                 "--output", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors", "vocab.txt"]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    n_gen = sum(k.startswith(("generator/", "generator_predictions/")) for k in c["layout"])
    assert f"converted {len(c['layout']) - n_gen} variables" in line and f"{n_gen} generator not requested" in line
    # an error is one clear line on stderr and exit status 1, nothing written
    assert main(["convert", "tf", "--checkpoint", str(tmp_path / "nope"), "--model", "chinese-electra-small",
                 "--output", str(tmp_path / "x")]) == 1
    assert "TF checkpoint not found" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["convert", "tf", "--checkpoint", ckpt_dir, "--model", "chinese-electra-small",
                 "--output", str(tmp_path / "x")]) == 1  # tiny checkpoint vs the registered small shapes
    err = capsys.readouterr().err
    assert "electra/embeddings/word_embeddings: [200, 128] vs [21128, 128]" in err
    assert not (tmp_path / "x").exists()


# --- a full-size checkpoint for timing (python tests/test_conversion_tf.py PREFIX --variant NAME) ----------
def _write_full_size(prefix: str, variant: str):
    from paddle_electra.config import get_variant
    v = get_variant(variant)
    c = v.discriminator
    layout = released_layout(c.vocab_size, c.embedding_size, c.hidden_size, c.num_hidden_layers,
                             c.intermediate_size, v.generator.hidden_size)
    tmp = prefix + ".writing"
    written = write_checkpoints(tmp, layout)["full"]
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    for f in os.listdir(os.path.dirname(written)):
        if f != "checkpoint":
            shutil.move(os.path.join(os.path.dirname(written), f),
                        os.path.join(os.path.dirname(os.path.abspath(prefix)),
                                     f.replace("electra_small", os.path.basename(prefix))))
    shutil.rmtree(tmp)
    print(f"wrote {prefix} ({len(layout)} weights, {2 * len(layout)} Adam slots, global_step)")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="write a full-size random TF checkpoint in the released layout")
    ap.add_argument("prefix")
    ap.add_argument("--variant", default="chinese-electra-small")
    a = ap.parse_args()
    sys.path.insert(0, ROOT)
    _write_full_size(a.prefix, a.variant)


def test_output_is_never_the_checkpoint_folder(ckpts, tmp_path, capsys):
    from paddle_electra.cli import main
    c = ckpts["small"]
    ckpt_dir = os.path.dirname(c["prefixes"]["full"])
    before = sorted(os.listdir(ckpt_dir))
    for out in (ckpt_dir, os.path.dirname(ckpt_dir)):
        assert main(["convert", "tf", "--checkpoint", ckpt_dir, "--discriminator-config", c["disc"],
                     "--output", out, "--overwrite"]) == 1
        assert "the input" in capsys.readouterr().err
    assert sorted(os.listdir(ckpt_dir)) == before
    # the model card names the source, the licence and the citation, and says parity was not measured
    out = tmp_path / "small"
    assert main(["convert", "tf", "--checkpoint", ckpt_dir, "--discriminator-config", c["disc"],
                 "--output", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert f"TensorFlow checkpoint {os.path.abspath(c['prefixes']['full'])}" in card
    assert "Apache-2.0" in card and "cui-etal-2020-revisiting" in card and "parity | not measured" in card

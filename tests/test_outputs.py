"""Writers never replace what the user did not ask to replace (convert tf|hf, init, export paddlenlp,
export pretraining, build_pretraining_dataset, save_pretrained), and convert hf reads nothing
through a link out of its input folder."""
import json
import os

import numpy as np
import pytest

from paddle_electra.cli import main
from paddle_electra.config import ElectraConfig
from paddle_electra.io import CheckpointError, OutputError, save_tensors

TINY = ElectraConfig(vocab_size=21128, embedding_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A bare HF ElectraModel folder (torch layout: Linear weights [out, in]), written without torch."""
    import paddle
    from paddle_electra.modeling import ElectraModel
    from paddle_electra.tokenizer import bundled_vocab_path
    paddle.seed(0)
    state = {k: v.numpy() for k, v in ElectraModel(TINY).state_dict().items()}
    hf = {k: (v.T.copy() if v.ndim == 2 and "embeddings." not in k else v) for k, v in state.items()}
    d = tmp_path_factory.mktemp("hfsrc") / "hf"
    d.mkdir()
    save_tensors(hf, str(d / "model.safetensors"))
    cfg = {k: v for k, v in TINY.to_dict().items()}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "vocab.txt").write_bytes(open(bundled_vocab_path(), "rb").read())
    return d


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def _snapshot(folder):
    return {os.path.relpath(os.path.join(r, f), folder): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(folder) for f in fs}


def test_convert_into_the_current_folder_keeps_it(hf_dir, tmp_path, monkeypatch, capsys):
    # the probe's case: mkdir w && cd w && echo x > notes.txt && cp -r HF hf && convert hf --input hf --output .
    w = tmp_path / "w"
    w.mkdir()
    (w / "notes.txt").write_text("x")
    _copy(hf_dir, w / "hf")
    before = _snapshot(w)
    monkeypatch.chdir(w)
    for extra in ([], ["--overwrite"]):  # the input inside the output: never, not even with --overwrite
        assert main(["convert", "hf", "--input", "hf", "--output", ".", *extra]) == 1
        assert "contains the input" in capsys.readouterr().err
    assert main(["convert", "hf", "--input", "hf", "--output", "hf", "--overwrite"]) == 1
    assert "is the input" in capsys.readouterr().err
    assert _snapshot(w) == before and sorted(os.listdir(w)) == ["hf", "notes.txt"]


def test_convert_refuses_files_and_foreign_folders_unless_asked(hf_dir, tmp_path, capsys):
    f = tmp_path / "result.txt"
    f.write_text("keep me")
    for extra in ([], ["--overwrite"]):  # a file is never replaced by a folder
        assert main(["convert", "hf", "--input", str(hf_dir), "--output", str(f), *extra]) == 1
        assert "not a folder" in capsys.readouterr().err
    assert f.read_text() == "keep me"
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.csv").write_text("1,2")
    assert main(["convert", "hf", "--input", str(hf_dir), "--output", str(other)]) == 1
    err = capsys.readouterr().err
    assert "is not empty (data.csv)" in err and "--overwrite" in err
    assert (other / "data.csv").read_text() == "1,2"
    assert main(["convert", "hf", "--input", str(hf_dir), "--output", str(other), "--overwrite"]) == 0
    assert "data.csv" not in os.listdir(other) and "model.safetensors" in os.listdir(other)
    # a previous output of the same kind is replaced without asking (atomically, as before)
    (tmp_path / "empty").mkdir()
    assert main(["convert", "hf", "--input", str(hf_dir), "--output", str(tmp_path / "empty")]) == 0
    assert main(["convert", "hf", "--input", str(hf_dir), "--output", str(other)]) == 0


def test_save_pretrained_and_init_follow_the_same_rule(tmp_path, capsys):
    from paddle_electra.modeling import ElectraModel
    m = ElectraModel(TINY)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        m.save_pretrained(str(folder))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        m.save_pretrained(str(tmp_path / "file"), overwrite=True)
    assert (folder / "todo.txt").read_text() == "x" and (tmp_path / "file").read_text() == "x"
    m.save_pretrained(str(folder), overwrite=True)
    m.save_pretrained(str(folder))  # now a model folder: replaced
    assert main(["init", "chinese-electra-small", "--num-hidden-layers", "1", "--output", str(tmp_path / "file")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_exports_never_write_over_their_input(tmp_path, capsys):
    from paddle_electra.modeling import ElectraForPreTraining
    src = tmp_path / "model"
    ElectraForPreTraining(TINY, TINY.replace(hidden_size=16, intermediate_size=32, num_attention_heads=1)) \
        .save_pretrained(str(src))
    before = _snapshot(src)
    for out in (src, tmp_path):
        assert main(["export", "paddlenlp", "--input", str(src), "--output", str(out), "--overwrite"]) == 1
        assert "the input" in capsys.readouterr().err
    assert main(["export", "pretraining", str(src), str(src), "--overwrite"]) == 1
    assert "the input" in capsys.readouterr().err
    assert _snapshot(src) == before
    assert main(["export", "paddlenlp", "--input", str(src), "--output", str(tmp_path / "nlp")]) == 0
    assert main(["export", "paddlenlp", "--input", str(src), "--output", str(tmp_path / "nlp")]) == 0  # previous export


def test_dataset_builder_keeps_inputs_and_foreign_folders(tmp_path):
    from paddle_electra.pretraining.data import BuildOptions, build_dataset
    from paddle_electra.tokenizer import bundled_vocab_path
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = corpus / "a.txt"
    text.write_text("今天天气很好。\n我们去公园。\n\n第二篇文章。\n很短。\n", encoding="utf-8")
    opts = lambda out: BuildOptions(str(out), bundled_vocab_path(), max_seq_length=32)  # noqa: E731
    with pytest.raises(OutputError, match="contains the input"):
        build_dataset([str(text)], opts(corpus), progress=False, overwrite=True)
    assert os.listdir(corpus) == ["a.txt"]
    build_dataset([str(text)], opts(tmp_path / "data"), progress=False)
    build_dataset([str(text)], opts(tmp_path / "data"), progress=False)  # a previous build: replaced
    (tmp_path / "data" / "mine.txt").write_text("x")
    with pytest.raises(OutputError, match="not a previous pretraining dataset"):
        build_dataset([str(text)], opts(tmp_path / "data"), progress=False)
    assert (tmp_path / "data" / "mine.txt").exists()


# --- reading through links (issue 11, item 3) ------------------------------------------------------------
def test_convert_hf_reads_no_link_out_of_the_input(hf_dir, tmp_path):
    from paddle_electra.conversion.hf import convert_hf
    secret = tmp_path / "secret.txt"
    secret.write_text("[PAD]\nprivate\n")
    for name, target in (("vocab.txt", secret), ("config.json", secret)):
        d = _copy(hf_dir, tmp_path / f"linked_{name}")
        os.remove(d / name)
        os.symlink(target, d / name)
        with pytest.raises(CheckpointError, match=f"{name} is a link to .*secret.txt, out of"):
            convert_hf(str(d), str(tmp_path / f"out_{name}"))
        assert not (tmp_path / f"out_{name}").exists()
    # sharded weights: the index may only name files inside the folder
    for shard in ("../hf/model.safetensors", str(hf_dir / "model.safetensors")):
        d = _copy(hf_dir, tmp_path / f"sharded_{abs(hash(shard))}")
        os.remove(d / "model.safetensors")
        (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
        with pytest.raises(CheckpointError, match="is not a plain path inside the folder"):
            convert_hf(str(d), str(tmp_path / "out_shard"))
    # an HF cache snapshot links its files into the repo's blobs/: that is read
    repo = tmp_path / "models--hfl--tiny"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(os.listdir(hf_dir))):
        os.rename(_copy_file(hf_dir / f, repo / "blobs" / f"blob{i}"), repo / "blobs" / f"blob{i}")
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), snap / f)
    out = convert_hf(str(snap), str(tmp_path / "from_cache"))
    assert (tmp_path / "from_cache" / "model.safetensors").exists() and out


def _copy_file(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst

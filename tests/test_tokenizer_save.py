"""ElectraTokenizer.save_pretrained: vocab.txt + tokenizer_config.json, read back by from_pretrained."""
import json
import os
import stat

import pytest

from paddle_electra.tokenizer import ElectraTokenizer, bundled_vocab_path

TEXTS = ["今天天气不错 Héllo WORLD", "ΣΊΣΥΦΟΣ naïve 123abc"]


def test_round_trip_keeps_vocab_and_settings(tmp_path):
    vocab = tmp_path / "v.txt"
    lines = open(bundled_vocab_path(), encoding="utf-8").read().split("\n")
    vocab.write_text("\n".join(lines[:1000] + ["hello", "world", "##llo"]) + "\n", encoding="utf-8")
    tok = ElectraTokenizer(str(vocab), do_lower_case=False, max_input_chars_per_word=5)
    out = tok.save_pretrained(str(tmp_path / "saved"))
    assert sorted(os.listdir(out)) == ["tokenizer_config.json", "vocab.txt"]
    assert (tmp_path / "saved" / "vocab.txt").read_bytes() == vocab.read_bytes()
    cfg = json.loads((tmp_path / "saved" / "tokenizer_config.json").read_text())
    assert cfg["do_lower_case"] is False and cfg["max_input_chars_per_word"] == 5
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "saved" / "vocab.txt").st_mode) == 0o666 & ~umask
    back = ElectraTokenizer.from_pretrained(out)
    assert back.do_lower_case is False and back.max_input_chars_per_word == 5 and len(back) == len(tok)
    assert back(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]
    # the default (lower-casing) tokenizer differs on these texts: the setting really came back
    assert ElectraTokenizer(str(vocab))(TEXTS)["input_ids"] != tok(TEXTS)["input_ids"]
    assert ElectraTokenizer.from_pretrained(out, do_lower_case=True).do_lower_case is True  # the caller wins


def test_save_into_a_model_folder_leaves_its_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    ElectraTokenizer().save_pretrained(str(folder))
    assert sorted(os.listdir(folder)) == ["config.json", "tokenizer_config.json", "vocab.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        ElectraTokenizer().save_pretrained(str(tmp_path / "file"))


def test_bad_tokenizer_config_is_named(tmp_path):
    ElectraTokenizer().save_pretrained(str(tmp_path))
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": "yes"}')
    with pytest.raises(ValueError, match=r"tokenizer_config.json: field 'do_lower_case' must be bool"):
        ElectraTokenizer.from_pretrained(str(tmp_path))

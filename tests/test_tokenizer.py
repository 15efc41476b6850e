"""paddle_electra.tokenizer against an independent re-statement of Google's FullTokenizer
(tests/reference_tokenization.py), on the real corpus and on hand-made cases, plus the call API
and the bundled vocab."""
import glob
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_tokenization as reference  # noqa: E402
from paddle_electra.tokenizer import (ElectraTokenizer, bundled_vocab_path,  # noqa: E402
                                      truncated_pair_lengths)

VOCAB_MD5 = "3b5b76c4aef48ecf8cb3abaafe960f09"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tok():
    return ElectraTokenizer()


@pytest.fixture(scope="module")
def ref():
    return reference.ReferenceTokenizer(bundled_vocab_path())


def corpus_lines(data_dir, every_pd=4):
    """All 2,500 CLUECorpusSmall documents and every fourth People's Daily paragraph (7,371 lines
    in all)."""
    lines = []
    for name, step in (("CLUECorpusSmall_sampled.txt", 1), ("peoples_daily_1998_01.txt", every_pd)):
        with open(os.path.join(data_dir, "corpus", name), encoding="utf-8") as f:
            lines += [line.rstrip("\n") for i, line in enumerate(f) if i % step == 0]
    return lines


def first_difference(a, b):
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at token {k}: reference {a[max(0, k - 2):k + 3]} vs ours {b[max(0, k - 2):k + 3]}"


def assert_same(ref, tok, texts):
    bad = []
    for text in texts:
        want, got = ref.tokenize(text), tok.tokenize(text)
        if want != got:
            bad.append(f"{text[:60]!r}: {first_difference(want, got)}")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ:\n" + "\n".join(bad[:10])


def expected_surface(span):
    """What a token's text span becomes under the original's normalisation."""
    kept = "".join(c for c in span if not reference.is_dropped(c))
    return reference.fold(kept).replace("\u03c2", "\u03c3")  # final sigma: context, not span


def check_offsets(tok, text, enc_ids, offsets):
    for tid, (start, end) in zip(enc_ids, offsets):
        token = tok.convert_ids_to_tokens(tid)
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            assert (start, end) == (0, 0)
            continue
        assert 0 <= start < end <= len(text), (token, start, end)
        if token == "[UNK]":
            continue
        piece = token[2:] if token.startswith("##") else token
        assert expected_surface(text[start:end]) == piece.replace("\u03c2", "\u03c3"), \
            (text, token, text[start:end])


# --- (a) the real corpus ----------------------------------------------------------------------
def test_corpus_agrees_with_reference(shared_data, tok, ref):
    lines = corpus_lines(shared_data)
    assert len(lines) >= 5000
    ours = [tok.tokenize(line) for line in lines]
    ours_ids = [ids[1:-1] for ids in tok(lines)["input_ids"]]
    bad = []
    for line, got, got_ids in zip(lines, ours, ours_ids):
        want = ref.tokenize(line)
        if want != got or [ref.vocab[t] for t in want] != got_ids:
            bad.append(f"{line[:50]!r}: {first_difference(want, got)}")
    assert not bad, f"{len(bad)} of {len(lines)} corpus lines differ:\n" + "\n".join(bad[:10])


def test_corpus_offsets(shared_data, tok):
    lines = corpus_lines(shared_data, every_pd=20)[::5]
    enc = tok(lines, return_offsets_mapping=True)
    for line, ids, offsets in zip(lines, enc["input_ids"], enc["offset_mapping"]):
        check_offsets(tok, line, ids, offsets)


# --- (b) hand-made cases ----------------------------------------------------------------------
HAND_CASES = {
    # symbols are not punctuation: they stay inside a word and become ## pieces
    "温度30℃": ["温", "度", "30", "##℃"],
    "℃ ▼ ① ™": ["℃", "▼", "①", "™"],
    "▼①™": ["▼", "##①", "##™"],
    "Hello World": ["hello", "world"],
    "iPhone XS Max": ["iphone", "x", "##s", "max"],
    "café naïve Ångström": ["cafe", "na", "##ive", "an", "##gs", "##tro", "##m"],
    "ＡＢＣ１２３": ["ａ", "##ｂ", "##ｃ", "##１", "##２", "##３"],
    "，。！？【】（）《》：；": ["，", "。", "！", "？", "【", "】", "（", "）", "《", "》", "：", "；"],
    "“引号”": ["[UNK]", "引", "号", "[UNK]"],
    "😀 👍🏽 ❤️": ["[UNK]", "[UNK]", "❤"],  # U+FE0F is a non-spacing mark: stripped
    # zero-width space / BOM / NUL / U+FFFD vanish (so the word closes up); ZWJ too
    "a\u200bb": ["ab"],
    "x\u200dy": ["x", "##y"],
    "\ufeffz": ["z"],
    "p\x00q": ["p", "##q"],
    "r\ufffds": ["rs"],
    "我\t们\n好\r吗": ["我", "们", "好", "吗"],
    "": [],
    " \t\n\u3000\u00a0": [],
    "ΟΔΟΣ Σ": ["ο", "##δ", "##ο", "##ς", "σ"],  # Python's lower(): word-final sigma
    "İ": ["i"],
    "abc$def^ghi": ["abc", "$", "de", "##f", "^", "g", "##hi"],  # ASCII symbols split like punctuation
    # CJK extension E from U+2B820: its own word (the `tokenizers` table starts at U+2B920)
    "a\U0002b820b": ["a", "[UNK]", "b"],
    # unassigned and private-use code points are dropped like control characters
    "a\u0378b\ue000c": ["abc"],
    "[CLS] [MASK]": ["[", "cl", "##s", "]", "[", "ma", "##sk", "]"],  # text, not special tokens
}


@pytest.mark.parametrize("text", list(HAND_CASES))
def test_hand_cases(tok, ref, text):
    assert ref.tokenize(text) == HAND_CASES[text]
    assert tok.tokenize(text) == HAND_CASES[text]
    assert tok(text)["input_ids"][1:-1] == ref.ids(text)
    enc = tok(text, return_offsets_mapping=True)
    check_offsets(tok, text, enc["input_ids"], enc["offset_mapping"])


@pytest.mark.parametrize("n", [100, 101, 150, 200, 201, 250])
def test_long_words(tok, ref, n):
    # 101..200 characters: HF's default limit (100) gives [UNK]; the original's (200) does not
    word = ("ab" * n)[:n]
    got = tok.tokenize("前 " + word + " 后")
    assert got == ref.tokenize("前 " + word + " 后")
    if n <= 200:
        assert "[UNK]" not in got and "".join(t.lstrip("#") for t in got[1:-1]) == word
    else:
        assert got == ["前", "[UNK]", "后"]


def _sweep(tok, ref, texts):
    got = [e.tokens for e in tok.backend.encode_batch(texts, add_special_tokens=False)]
    bad = [(ascii(t), want, g) for t, g in zip(texts, got) for want in [ref.tokenize(t)] if want != g]
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:5]}"


def _code_points(*ranges):
    return [chr(c) for r in ranges for c in r if not 0xD800 <= c <= 0xDFFF]


def test_unicode_sweep(tok, ref):
    """Every code point of the Basic Multilingual Plane inside a word, a sample of the others, and
    a sample alone, agree with the reference (whose tables are this Python's unicodedata)."""
    chars = _code_points(range(0x10000), range(0x10000, 0x110000, 97), range(0x2B800, 0x2B940))
    _sweep(tok, ref, ["a" + c + "b" for c in chars] + chars[::11])


@pytest.mark.slow
def test_unicode_sweep_all_code_points(tok, ref):
    chars = _code_points(range(0x110000))
    for template in ("{}", "a{}b", "\u03a3{}", "{}\u0301x"):
        _sweep(tok, ref, [template.format(c) for c in chars])


def test_random_mixtures(tok, ref):
    rng = random.Random(1234)
    pools = [range(0x20, 0x7F), range(0xA0, 0x250), range(0x300, 0x370), range(0x370, 0x400),
             range(0x2000, 0x2070), range(0x3000, 0x3100), range(0x4E00, 0x4F00), range(0xAC00, 0xAC40),
             range(0xE000, 0xE010), range(0xFF00, 0xFFF0), range(0x1F300, 0x1F700), range(0x10000)]
    texts = []
    for _ in range(3000):
        s = "".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(1, 40)))
        texts.append("".join(c for c in s if not 0xD800 <= ord(c) <= 0xDFFF))
    assert_same(ref, tok, texts)


def test_bytes_input_in_reference(ref):
    assert ref.tokenize("café".encode("utf-8")) == ref.tokenize("café")


# --- (c) the call API ---------------------------------------------------------------------------
def _ids(tok, chars):
    return [tok.vocab[c] for c in chars]


def test_pair_longest_first_truncation(tok):
    cls, sep = tok.cls_token_id, tok.sep_token_id
    # 4 + 6 tokens into 10 - 3 = 7: the longer (second) loses 2, then they are equal (4, 4) and
    # the second loses one more: (4, 3). (`tokenizers`' own rule would give (3, 4).)
    a, b = "一二三四", "甲乙丙丁戊己"
    enc = tok(a, b, max_length=10, truncation=True)
    assert enc["input_ids"] == [cls] + _ids(tok, "一二三四") + [sep] + _ids(tok, "甲乙丙") + [sep]
    assert enc["token_type_ids"] == [0] * 6 + [1] * 4
    assert enc["attention_mask"] == [1] * 10
    # 6 + 4 into 6: (5,4) (4,4) (4,3) (3,3)
    enc = tok("一二三四五六", "甲乙丙丁", max_length=9, truncation=True)
    assert enc["input_ids"] == [cls] + _ids(tok, "一二三") + [sep] + _ids(tok, "甲乙丙") + [sep]
    # only the longer is cut when the shorter fits in half
    enc = tok("一", "甲乙丙丁戊己", max_length=6)
    assert enc["input_ids"] == [cls] + _ids(tok, "一") + [sep] + _ids(tok, "甲乙") + [sep]
    # nothing to cut
    enc = tok("一", "甲", max_length=20)
    assert enc["input_ids"] == [cls] + _ids(tok, "一") + [sep] + _ids(tok, "甲") + [sep]
    with pytest.raises(ValueError, match="max_length=2"):
        tok("一", "甲", max_length=2)


def test_truncated_pair_lengths_matches_the_pop_loop():
    for la in range(12):
        for lb in range(12):
            for budget in range(16):
                a, b = la, lb
                while a + b > budget:  # _truncate_seq_pair
                    if a > b:
                        a -= 1
                    else:
                        b -= 1
                assert truncated_pair_lengths(la, lb, budget) == (a, b), (la, lb, budget)


def test_long_pair_truncation_is_fast(tok):
    a, b = "中" * 20000, "文" * 30000
    t = time.perf_counter()
    enc = tok(a, b, max_length=16, truncation=True, return_offsets_mapping=True)
    assert time.perf_counter() - t < 3
    # 13 tokens: 7 from the first, 6 from the second
    assert enc["input_ids"] == [tok.cls_token_id] + _ids(tok, "中" * 7) + [tok.sep_token_id] + \
        _ids(tok, "文" * 6) + [tok.sep_token_id]
    assert enc["offset_mapping"][14] == (5, 6)


def test_single_truncation_and_other_strategies(tok):
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert tok("一二三四五六", max_length=5)["input_ids"] == [cls] + _ids(tok, "一二三") + [sep]
    assert tok("一二三四五六", max_length=5, truncation=False)["input_ids"] == \
        [cls] + _ids(tok, "一二三四五六") + [sep]
    enc = tok("一二三四五六", "甲乙", max_length=7, truncation="only_first")
    assert enc["input_ids"] == [cls] + _ids(tok, "一二") + [sep] + _ids(tok, "甲乙") + [sep]


def test_padding_and_batches(tok):
    texts, pairs = ["我爱北京", "你好", "天安门广场很大"], ["甲", "乙丙", "丁"]
    enc = tok(texts, pairs, padding=True)
    lengths = [4 + 1 + 3, 2 + 2 + 3, 7 + 1 + 3]
    assert [len(x) for x in enc["input_ids"]] == [11, 11, 11]
    for ids, types, mask, n, (a, b) in zip(enc["input_ids"], enc["token_type_ids"],
                                           enc["attention_mask"], lengths, zip(texts, pairs)):
        assert mask == [1] * n + [0] * (11 - n)
        assert ids[n:] == [tok.pad_token_id] * (11 - n)
        assert types == [0] * (len(a) + 2) + [1] * (len(b) + 1) + [0] * (11 - n)
        assert ids[:n] == [tok.cls_token_id] + _ids(tok, a) + [tok.sep_token_id] + _ids(tok, b) + [tok.sep_token_id]
    enc = tok(texts, max_length=16, padding="max_length", return_offsets_mapping=True,
              return_special_tokens_mask=True)
    assert all(len(x) == 16 for k in enc for x in enc[k])
    assert enc["offset_mapping"][1][:5] == [(0, 0), (0, 1), (1, 2), (0, 0), (0, 0)]
    assert enc["special_tokens_mask"][1][:5] == [1, 0, 0, 1, 1]
    enc = tok(texts, max_length=5, padding="max_length", truncation=True)
    assert enc["input_ids"][1] == [tok.cls_token_id] + _ids(tok, "你好") + [tok.sep_token_id, 0]
    assert enc["attention_mask"][1] == [1, 1, 1, 1, 0]
    # a single string gives flat lists; a list of one gives a list of one
    assert isinstance(tok("你好")["input_ids"][0], int)
    assert tok(["你好"])["input_ids"] == [tok("你好")["input_ids"]]
    assert tok([], padding=True)["input_ids"] == []
    with pytest.raises(ValueError, match="text_pair"):
        tok(["a", "b"], ["c"])
    with pytest.raises(TypeError, match="str"):
        tok(["a", 3])
    with pytest.raises(ValueError, match="max_length"):
        tok("a", padding="max_length")
    with pytest.raises(ValueError, match="padding"):
        tok("a", padding="left")


def test_offsets_for_pairs_accents_and_full_width(tok):
    a, b = "Ångström café ＡＢＣ１２３，ΟΔΟΣ İstanbul", "naïve ｆｕｌｌ－ｗｉｄｔｈ 温度30℃!"
    enc = tok(a, b, return_offsets_mapping=True)
    first = enc["token_type_ids"].index(1)
    check_offsets(tok, a, enc["input_ids"][:first], enc["offset_mapping"][:first])
    check_offsets(tok, b, enc["input_ids"][first:], enc["offset_mapping"][first:])
    spans = [a[s:e] for s, e in enc["offset_mapping"][1:8]]
    assert spans == ["Ån", "gs", "trö", "m", "café", "Ａ", "Ｂ"]


def test_call_settings_do_not_leak(tok):
    text = "一二三四五六"
    assert len(tok(text, max_length=4, padding="max_length")["input_ids"]) == 4
    assert tok.tokenize(text) == list(text)
    assert tok.encode_batch_ids([text]) == [_ids(tok, text)]
    assert tok.backend.truncation is None and tok.backend.padding is None
    assert len(tok(text)["input_ids"]) == 8


def test_decode(tok):
    ids = tok("Hello 我们 unaffable [CLS]")["input_ids"]
    assert tok.decode(ids) == "hello 我 们 unaffable [ cls ]"
    assert tok.decode(ids, skip_special_tokens=False).startswith("[CLS] hello")


# --- (d) the bundled vocab ----------------------------------------------------------------------
def test_bundled_vocab(tok):
    path = bundled_vocab_path()
    assert path == os.path.join(ROOT, "paddle_electra", "vocab.txt")
    with open(path, "rb") as f:
        assert hashlib.md5(f.read()).hexdigest() == VOCAB_MD5
    assert len(tok) == 21128
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id,
            tok.mask_token_id] == [0, 100, 101, 102, 103]


def test_vocab_is_package_data(tmp_path):
    """A wheel built from setup.py carries paddle_electra/vocab.txt, byte for byte."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(ROOT, "setup.py"), src)
    shutil.copytree(os.path.join(ROOT, "paddle_electra"), src / "paddle_electra",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                          "-q", ".", "-w", str(tmp_path / "dist")], cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert hashlib.md5(z.read("paddle_electra/vocab.txt")).hexdigest() == VOCAB_MD5


def test_cased_mode_agrees_with_reference(tok):
    cased = ElectraTokenizer(do_lower_case=False)
    ref_cased = reference.ReferenceTokenizer(bundled_vocab_path(), lower_case=False)
    texts = list(HAND_CASES) + ["Café ΟΔΟΣ ＡＢＣ İstanbul 温度30℃ a\u0301b"]
    assert_same(ref_cased, cased, texts)
    assert cased.tokenize("Café") != tok.tokenize("Café")


def test_a_lone_surrogate_is_a_value_error_naming_the_input():
    """issue 23 item 9: the tokenizers library raised "TypeError: TextEncodeInput must be Union[...]"."""
    from paddle_electra.tokenizer import ElectraTokenizer
    t = ElectraTokenizer()
    for call, where in [(lambda: t("\ud800"), "text is"), (lambda: t(["好", "a\udfffb"]), r"text\[1\] is"),
                        (lambda: t(["好"], ["b\ud800"], max_length=8), r"text_pair\[0\] is"),
                        (lambda: t.tokenize("\ud800"), "text is"), (lambda: t.encode_batch_ids(["x", "\udfff"]),
                                                                    r"texts\[1\] is")]:
        with pytest.raises(ValueError, match=where + r" not valid Unicode: \\ud[8f]\w\w at character \d"):
            call()
    assert t(["好"])["input_ids"] == [[101, 1962, 102]]  # and the tokenizer still works

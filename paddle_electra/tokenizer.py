"""BERT WordPiece for Chinese, as the models were trained with (Google's `FullTokenizer`,
do_lower_case=True, max_input_chars_per_word=200), built on the `tokenizers` library.

`ElectraTokenizer()` uses the vocab shipped inside the package (21,128 lines). Called like HF's and
PaddleNLP's tokenizers: `tok(text, text_pair=None, max_length=None, truncation=..., padding=...,
return_offsets_mapping=False)` -> dict of `input_ids`, `token_type_ids`, `attention_mask` (and
`offset_mapping`, character offsets into the original text), lists of lists for a batch.
Tested to give the original's word pieces on the corpus and on every code point
(tests/test_tokenizer.py against tests/reference_tokenization.py; docs/tokenizer.md).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import unicodedata
from typing import Dict, List, Optional, Sequence, Union

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

# The original's limit; HF's default of 100 turns 101..200-character words into [UNK] differently.
MAX_INPUT_CHARS_PER_WORD = 200
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG = "tokenizer_config.json"  # save_pretrained's settings

# The code point blocks the original spaces out as "Chinese characters". `tokenizers`'
# BertNormalizer has 0x2B920 for 0x2B820 (CJK extension E starts 256 code points early), so we
# isolate these ourselves.
CJK_BLOCKS = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Python's str.lower() turns a word-final capital sigma into final sigma (Unicode's Final_Sigma
# rule); `tokenizers` lower-cases one character at a time and would give σ.
FINAL_SIGMA = r"(?<=\p{Cased}\p{Case_Ignorable}*)\x{3A3}(?!\p{Case_Ignorable}*\p{Cased})"


def _char_class(ranges) -> str:
    return "[" + "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}"
                         for a, b in ranges) + "]"


@functools.lru_cache(maxsize=None)
def _unicode_classes():
    """Regex classes from this Python's `unicodedata`, the tables the original consulted:
    characters it drops (category C* but tab/newline/return, plus U+FFFD), non-spacing marks (Mn,
    removed with the accents) and characters it splits off as single tokens (ASCII
    non-alphanumerics, category P*, CJK blocks). `tokenizers` carries older Unicode tables and
    keeps unassigned code points (Cn), which the original drops."""
    drop, marks, alone = [], [], []
    ascii_punct = {c for lo, hi in ((33, 47), (58, 64), (91, 96), (123, 126)) for c in range(lo, hi + 1)}

    def add(ranges, cp):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])

    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates cannot occur in a str that reaches Rust
            continue
        cat = unicodedata.category(chr(cp))
        if (cat[0] == "C" and cp not in (9, 10, 13)) or cp == 0xFFFD:
            add(drop, cp)
        elif cat == "Mn":
            add(marks, cp)
        elif cat[0] == "P" or cp in ascii_punct:
            add(alone, cp)
    alone = sorted(alone + [list(b) for b in CJK_BLOCKS])
    return _char_class(drop), _char_class(marks), _char_class(alone)


def truncated_pair_lengths(len_a: int, len_b: int, budget: int):
    """Lengths the original longest-first rule keeps of a text pair within `budget` tokens: take
    one token off the end of the longer text, off the second when they are equally long, until
    the pair fits."""
    if len_a + len_b <= budget:
        return len_a, len_b
    short = min(len_a, len_b)
    if budget - short >= short:  # only the longer one is cut
        return (len_a, budget - len_a) if len_a == short else (budget - len_b, len_b)
    return budget - budget // 2, budget // 2  # both cut: equal, or the first one token longer


def bundled_vocab_path() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "vocab.txt")


def load_vocab(path: str) -> Dict[str, int]:
    vocab = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            tok = line.rstrip("\n")
            if tok in vocab:
                raise ValueError(f"{path}: line {i + 1}: token {tok!r} appears twice")
            vocab[tok] = i
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        if special not in vocab:
            raise ValueError(f"{path}: special token {special} is missing")
    return vocab


@contextlib.contextmanager
def _named_bad_text(inputs: Dict[str, Sequence[str]], single: bool = False):
    """The tokenizers library refuses a text that is no valid Unicode (a lone surrogate such as "\\ud800",
    which Python strings can hold) with a TypeError naming no input: say which one, as a ValueError."""
    try:
        yield
    except TypeError:
        for name, texts in inputs.items():
            for i, t in enumerate(texts):
                try:
                    t.encode("utf-8")
                except UnicodeEncodeError as e:
                    where = name if single else f"{name}[{i}]"
                    bad = t[e.start].encode("utf-8", "backslashreplace").decode()
                    raise ValueError(f"{where} is not valid Unicode: {bad} at character {e.start} (a lone "
                                     f"surrogate); the tokenizer takes only text that can be encoded as UTF-8") from None
                except AttributeError:
                    pass
        raise


class ElectraTokenizer:
    def __init__(self, vocab_file: Optional[str] = None, do_lower_case: bool = True,
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
        self.vocab_file = vocab_file or bundled_vocab_path()
        self.do_lower_case, self.max_input_chars_per_word = bool(do_lower_case), int(max_input_chars_per_word)
        self.vocab = load_vocab(self.vocab_file)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        tok = Tokenizer(WordPiece(self.vocab, unk_token="[UNK]",
                                  max_input_chars_per_word=max_input_chars_per_word))
        drop, marks, alone = _unicode_classes()
        # FullTokenizer's order: clean text (drop control and unassigned chars, whitespace ->
        # space); then, with do_lower_case, lower case (word-final sigma first), NFD and drop the
        # non-spacing marks
        clean = [normalizers.Replace(Regex(drop), ""),
                 normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                            strip_accents=False, lowercase=False)]
        if do_lower_case:
            steps = clean[:1] + [normalizers.Replace(Regex(FINAL_SIGMA), "\u03c2")] + clean[1:] + [
                normalizers.Lowercase(), normalizers.NFD(), normalizers.Replace(Regex(marks), "")]
        else:
            steps = clean
        tok.normalizer = normalizers.Sequence(steps)
        # CJK characters and punctuation (ASCII non-alphanumerics, Unicode P*) stand alone; the
        # rest splits on whitespace
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(alone), behavior="isolated"), pre_tokenizers.WhitespaceSplit()])
        self.pad_token_id, self.unk_token_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_token_id, self.sep_token_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.mask_token_id = self.vocab["[MASK]"]
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_token_id), ("[SEP]", self.sep_token_id)])
        # [CLS] etc. are not registered as added tokens: the original tokenizes the text "[CLS]"
        # as ordinary characters, so decode() skips them itself
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
        self._special_ids = {self.pad_token_id, self.unk_token_id, self.cls_token_id,
                             self.sep_token_id, self.mask_token_id}
        self._tok = tok
        # truncation/padding are settings of the shared backend: one call at a time sets and uses
        # them; tokenize() and encode_batch_ids() use a copy that never has any
        self._lock = threading.Lock()
        self._plain = Tokenizer.from_str(tok.to_str())

    @classmethod
    def from_pretrained(cls, path: Optional[str] = None, **kw) -> "ElectraTokenizer":
        """The vocab of a from_pretrained dir when it has one, else the bundled vocab; the settings of
        its tokenizer_config.json (save_pretrained's) unless given."""
        vocab = os.path.join(path, VOCAB_FILE) if path else None
        settings = {}
        cfg = os.path.join(path, TOKENIZER_CONFIG) if path else None
        if cfg and os.path.exists(cfg):
            try:
                with open(cfg, encoding="utf-8") as f:
                    saved = json.load(f)
            except ValueError as e:
                raise ValueError(f"{cfg}: not valid JSON ({e})") from None
            if not isinstance(saved, dict):
                raise ValueError(f"{cfg}: expected a JSON object")
            for key, kind in (("do_lower_case", bool), ("max_input_chars_per_word", int)):
                if key in saved:
                    if not isinstance(saved[key], kind) or (kind is int and isinstance(saved[key], bool)):
                        raise ValueError(f"{cfg}: field {key!r} must be {kind.__name__}, got {saved[key]!r}")
                    settings[key] = saved[key]
        return cls(vocab if vocab and os.path.exists(vocab) else None, **{**settings, **kw})

    def save_pretrained(self, path: str) -> str:
        """Write vocab.txt and tokenizer_config.json into folder `path` (made when missing; other files
        in it are left alone), each written beside and renamed in; from_pretrained(path) reads them back."""
        import tempfile
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError(f"{path} exists and is not a folder")
        os.makedirs(path, exist_ok=True)
        with open(self.vocab_file, "rb") as f:
            vocab = f.read()
        config = json.dumps({"tokenizer_class": type(self).__name__, "do_lower_case": self.do_lower_case,
                             "max_input_chars_per_word": self.max_input_chars_per_word,
                             "model_max_length": 512}, indent=2).encode() + b"\n"
        umask = os.umask(0)
        os.umask(umask)
        for name, data in ((VOCAB_FILE, vocab), (TOKENIZER_CONFIG, config)):
            fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o666 & ~umask)
                os.replace(tmp, os.path.join(path, name))
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        return path

    def __len__(self):
        return len(self.vocab)

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    # --- pieces ----------------------------------------------------------------------------
    def tokenize(self, text: str) -> List[str]:
        with _named_bad_text({"text": [text]}, single=True):
            return self._plain.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]):
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]):
        if isinstance(ids, int):
            return self.ids_to_tokens[ids]
        return [self.ids_to_tokens[int(i)] for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Tokens joined by spaces, "##" pieces glued to the one before (PaddleNLP's rule)."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self._tok.decode(ids, skip_special_tokens=False)

    def encode_batch_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Ids without special tokens, for many texts at once (the pretraining builder's path)."""
        texts = list(texts)
        with _named_bad_text({"texts": texts}):
            return [e.ids for e in self._plain.encode_batch(texts, add_special_tokens=False)]

    # --- the HF / PaddleNLP call -------------------------------------------------------------
    def __call__(self, text, text_pair=None, max_length: Optional[int] = None, truncation=None,
                 padding: Union[bool, str] = False, return_offsets_mapping: bool = False,
                 return_special_tokens_mask: bool = False, stride: int = 0):
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        pairs = None
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"text has {len(texts)} items but text_pair has {len(pairs)}")
        for t in texts + (pairs or []):
            if not isinstance(t, str):
                raise TypeError(f"texts must be str, got {type(t).__name__}: {t!r}")
        if truncation is None:
            truncation = max_length is not None
        with self._lock, _named_bad_text({"text": texts, "text_pair": pairs or []}, single):
            try:
                return self._encode(texts, pairs, single, max_length, truncation, padding, stride,
                                    return_offsets_mapping, return_special_tokens_mask)
            finally:  # leave `backend` as it was built, for callers that use it directly
                self._tok.no_truncation()
                self._tok.no_padding()

    def _encode(self, texts, pairs, single, max_length, truncation, padding, stride,
                return_offsets_mapping, return_special_tokens_mask):
        tok = self._tok
        if padding not in (False, None, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        strategy = None
        if truncation and max_length is not None:
            strategy = truncation if isinstance(truncation, str) else "longest_first"
        tok.no_padding()
        # fields the caller gets, with their padding values; converting a field to Python lists
        # costs about as much as the encoding itself, so only the asked-for ones are read
        fields = {"input_ids": self.pad_token_id, "token_type_ids": 0}
        if return_offsets_mapping:
            fields["offset_mapping"] = (0, 0)
        if return_special_tokens_mask:
            fields["special_tokens_mask"] = 1
        if pairs and strategy == "longest_first":
            # Not the backend's truncation: it gives the odd leftover token to the longer text (the
            # original `_truncate_seq_pair`, like HF's and PaddleNLP's Python tokenizers, gives it
            # to the first), and with both texts cut it builds every pair of overflowing windows,
            # quadratic in the text lengths. `stride` only shapes those windows, which we do not
            # return.
            tok.no_truncation()
            budget = max_length - 3
            if budget < 0:
                raise ValueError(f"max_length={max_length} leaves no room for a text pair's 3 special tokens")
            firsts = tok.encode_batch(texts, add_special_tokens=False)
            seconds = tok.encode_batch(pairs, add_special_tokens=False)
            rows = [self._pair_row(a, b, budget, fields) for a, b in zip(firsts, seconds)]
        else:
            if strategy:
                tok.enable_truncation(max_length, strategy=strategy, stride=stride)
            else:
                tok.no_truncation()
            encs = tok.encode_batch(list(zip(texts, pairs)) if pairs else texts)
            attr = {"input_ids": "ids", "token_type_ids": "type_ids", "offset_mapping": "offsets",
                    "special_tokens_mask": "special_tokens_mask"}
            rows = [{k: getattr(e, attr[k]) for k in fields} for e in encs]
        for row in rows:
            row["attention_mask"] = [1] * len(row["input_ids"])
        fields["attention_mask"] = 0
        if padding in (True, "longest", "max_length") and rows:
            length = max_length if padding == "max_length" else max(len(r["input_ids"]) for r in rows)
            for row in rows:
                n = length - len(row["input_ids"])
                if n > 0:
                    for k, pad in fields.items():
                        row[k] += [pad] * n
        order = ["input_ids", "token_type_ids", "attention_mask", "offset_mapping", "special_tokens_mask"]
        out = {k: [r[k] for r in rows] for k in order if k in fields}
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def _pair_row(self, a, b, budget, fields):
        """`[CLS] A [SEP] B [SEP]` (the post-processor's pair template) from encodings of A and B
        without special tokens, cut to the original longest-first lengths."""
        la, lb = truncated_pair_lengths(len(a.ids), len(b.ids), budget)
        cls, sep = self.cls_token_id, self.sep_token_id
        row = {"input_ids": [cls] + a.ids[:la] + [sep] + b.ids[:lb] + [sep],
               "token_type_ids": [0] * (la + 2) + [1] * (lb + 1)}
        if "offset_mapping" in fields:
            row["offset_mapping"] = [(0, 0)] + a.offsets[:la] + [(0, 0)] + b.offsets[:lb] + [(0, 0)]
        if "special_tokens_mask" in fields:
            row["special_tokens_mask"] = [1] + [0] * la + [1] + [0] * lb + [1]
        return row

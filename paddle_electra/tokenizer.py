"""BERT WordPiece for Chinese, as the models were trained with (Google's `FullTokenizer`,
do_lower_case=True, max_input_chars_per_word=200), built on the `tokenizers` library.

`ElectraTokenizer()` uses the vocab shipped inside the package (21,128 lines). Called like HF's and
PaddleNLP's tokenizers: `tok(text, text_pair=None, max_length=None, truncation=..., padding=...,
return_offsets_mapping=False)` -> dict of `input_ids`, `token_type_ids`, `attention_mask` (and
`offset_mapping`, character offsets into the original text), lists of lists for a batch.
"""
from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Sequence, Union

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

# The original's limit; HF's default of 100 turns 101..200-character words into [UNK] differently.
MAX_INPUT_CHARS_PER_WORD = 200


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


class ElectraTokenizer:
    def __init__(self, vocab_file: Optional[str] = None, do_lower_case: bool = True,
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD):
        self.vocab_file = vocab_file or bundled_vocab_path()
        self.vocab = load_vocab(self.vocab_file)
        self.ids_to_tokens = {i: t for t, i in self.vocab.items()}
        tok = Tokenizer(WordPiece(self.vocab, unk_token="[UNK]",
                                  max_input_chars_per_word=max_input_chars_per_word))
        # clean text (drop control chars, whitespace -> space), space around CJK characters,
        # strip accents and lower case only when do_lower_case, as FullTokenizer does
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=do_lower_case, lowercase=do_lower_case)
        # split on whitespace and punctuation (ASCII non-alphanumerics and Unicode P*)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self.pad_token_id, self.unk_token_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_token_id, self.sep_token_id = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.mask_token_id = self.vocab["[MASK]"]
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_token_id), ("[SEP]", self.sep_token_id)])
        self._tok = tok
        # truncation/padding are settings of the shared backend: one call at a time sets and uses them
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path: Optional[str] = None, **kw) -> "ElectraTokenizer":
        """The vocab of a from_pretrained dir when it has one, else the bundled vocab."""
        vocab = os.path.join(path, "vocab.txt") if path else None
        return cls(vocab if vocab and os.path.exists(vocab) else None, **kw)

    def __len__(self):
        return len(self.vocab)

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    # --- pieces ----------------------------------------------------------------------------
    def tokenize(self, text: str) -> List[str]:
        return self._tok.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]):
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        return [self.vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]]):
        if isinstance(ids, int):
            return self.ids_to_tokens[ids]
        return [self.ids_to_tokens[int(i)] for i in ids]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def encode_batch_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Ids without special tokens, for many texts at once (the pretraining builder's path)."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

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
        with self._lock:
            return self._encode(texts, pairs, single, max_length, truncation, padding, stride,
                                return_offsets_mapping, return_special_tokens_mask)

    def _encode(self, texts, pairs, single, max_length, truncation, padding, stride,
                return_offsets_mapping, return_special_tokens_mask):
        tok = self._tok
        if truncation and max_length is not None:
            strategy = truncation if isinstance(truncation, str) else "longest_first"
            tok.enable_truncation(max_length, strategy=strategy, stride=stride)
        else:
            tok.no_truncation()
        if padding in (True, "longest"):
            tok.enable_padding(pad_id=self.pad_token_id, pad_token="[PAD]")
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            tok.enable_padding(pad_id=self.pad_token_id, pad_token="[PAD]", length=max_length)
        else:
            tok.no_padding()
        encs = tok.encode_batch(list(zip(texts, pairs)) if pairs else texts)
        out = {"input_ids": [e.ids for e in encs], "token_type_ids": [e.type_ids for e in encs],
               "attention_mask": [e.attention_mask for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encs]
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

"""A plain-Python re-statement of the tokenization the Chinese ELECTRA models were trained with.

The reference is Google's BERT/ELECTRA `tokenization.py` `FullTokenizer` (do_lower_case=True,
WordPiece limit of 200 characters a word). This file is written from that algorithm's description,
not copied, and is deliberately slow and literal: it is the yardstick `paddle_electra.tokenizer`
(built on the `tokenizers` library) is tested against, so it must not share code with it.

The steps, in the original's order:
1. text as unicode (bytes are decoded as UTF-8, undecodable bytes dropped);
2. clean: drop U+0000, U+FFFD and "control" characters (Unicode category C* -- Cc, Cf, Cs, Co,
   Cn -- except tab, newline and carriage return), and turn whitespace (space, \\t \\n \\r and
   category Zs) into a plain space;
3. put a space on both sides of every CJK ideograph (the original's list of code point blocks);
4. split on whitespace (Python's `str.split()`, which also splits on U+2028/U+2029, U+001C..1F);
5. for each piece: lower-case, canonical decomposition (NFD) and removal of non-spacing marks
   (category Mn), then split off punctuation characters one by one (ASCII 33-47, 58-64, 91-96,
   123-126, and Unicode category P*);
6. greedy longest-match-first WordPiece on each word, continuations prefixed with "##"; a word
   longer than 200 characters, or one that cannot be covered entirely by vocab pieces, is one
   [UNK].

Note: older revisions of Google BERT's file dropped only categories Cc and Cf in step 2; the
current BERT file and ELECTRA's copy drop all of C*, so private-use (Co) and unassigned (Cn) code
points vanish. We follow the current files.
"""
from __future__ import annotations

import unicodedata
from typing import Dict, Iterable, List, Union

UNK = "[UNK]"
MAX_WORD_CHARS = 200

# CJK code point blocks the original treats as "Chinese characters" (inclusive ranges): unified
# ideographs, extension A, extensions B-E, compatibility ideographs and their supplement.
CJK_BLOCKS = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

# ASCII characters that are neither letters nor digits count as punctuation even where Unicode
# calls them symbols ($ + < = > ^ ` | ~).
ASCII_PUNCT = frozenset(chr(c) for lo, hi in ((33, 47), (58, 64), (91, 96), (123, 126))
                        for c in range(lo, hi + 1))


def to_text(text: Union[str, bytes]) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "ignore")
    if isinstance(text, str):
        return text
    raise TypeError(f"expected str or bytes, got {type(text).__name__}")


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_BLOCKS)


def is_space(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def is_dropped(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return ch in ("\x00", "\ufffd") or unicodedata.category(ch)[0] == "C"


def is_punct(ch: str) -> bool:
    return ch in ASCII_PUNCT or unicodedata.category(ch)[0] == "P"


def clean_and_space_cjk(text: str) -> str:
    """Steps 2 and 3 in one pass over the characters."""
    pieces = []
    for ch in text:
        if is_dropped(ch):
            continue
        if is_space(ch):
            pieces.append(" ")
        elif is_cjk(ch):
            pieces.append(" " + ch + " ")
        else:
            pieces.append(ch)
    return "".join(pieces)


def fold(word: str) -> str:
    """Lower case, then NFD, then drop the non-spacing marks (the accents)."""
    decomposed = unicodedata.normalize("NFD", word.lower())
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def split_punct(word: str) -> List[str]:
    out: List[str] = []
    run = ""
    for ch in word:
        if is_punct(ch):
            if run:
                out.append(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.append(run)
    return out


def basic_tokenize(text: Union[str, bytes], lower_case: bool = True) -> List[str]:
    words: List[str] = []
    for piece in clean_and_space_cjk(to_text(text)).split():
        if lower_case:
            piece = fold(piece)
        # the original joins the pieces with spaces and splits again: a no-op unless a piece
        # holds whitespace, kept so the two agree by construction
        for w in split_punct(piece):
            words.extend(w.split())
    return words


def wordpiece(word: str, vocab, max_chars: int = MAX_WORD_CHARS, unk: str = UNK) -> List[str]:
    if len(word) > max_chars:
        return [unk]
    pieces: List[str] = []
    start = 0
    while start < len(word):
        # the longest vocab entry that starts at `start`
        for end in range(len(word), start, -1):
            cand = word[start:end] if start == 0 else "##" + word[start:end]
            if cand in vocab:
                pieces.append(cand)
                start = end
                break
        else:
            return [unk]
    return pieces


def read_vocab(path: str) -> Dict[str, int]:
    """One token a line; like the original, each line is stripped of surrounding whitespace
    (Python's notion, so a line holding only U+2028 becomes '') and a repeated token keeps its
    last index."""
    vocab: Dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        data = f.read()
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        vocab[line.strip()] = i
    return vocab


class ReferenceTokenizer:
    """`tokenize(text)` -> word pieces; `ids(text)` -> vocab indices (no [CLS]/[SEP])."""

    def __init__(self, vocab_path: str, lower_case: bool = True, max_chars: int = MAX_WORD_CHARS):
        self.vocab = read_vocab(vocab_path)
        self.lower_case = lower_case
        self.max_chars = max_chars

    def tokenize(self, text: Union[str, bytes]) -> List[str]:
        out: List[str] = []
        for word in basic_tokenize(text, self.lower_case):
            out.extend(wordpiece(word, self.vocab, self.max_chars))
        return out

    def ids(self, text: Union[str, bytes]) -> List[int]:
        return [self.vocab[t] for t in self.tokenize(text)]

    def tokenize_many(self, texts: Iterable[str]) -> List[List[str]]:
        return [self.tokenize(t) for t in texts]

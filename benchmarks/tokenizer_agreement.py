"""How often other Chinese BERT tokenizers disagree with the original FullTokenizer on real text.

Tokenizes corpus lines with the reference (tests/reference_tokenization.py, Google's algorithm
re-stated), with paddle_electra's ElectraTokenizer, PaddleNLP's ElectraTokenizer (built from the
bundled vocab, do_lower_case=True) and HF transformers' BertTokenizer / BertTokenizerFast (default
settings, same vocab), and prints per tokenizer the number of lines whose word pieces differ, the
diffs grouped by cause, and a few examples.

    python benchmarks/tokenizer_agreement.py [--data-dir ../shared/data] [--limit N] [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import reference_tokenization as reference  # noqa: E402

from paddle_electra.tokenizer import ElectraTokenizer, bundled_vocab_path  # noqa: E402

FILES = ("CLUECorpusSmall_sampled.txt", "peoples_daily_1998_01.txt")
# characters PaddleNLP's BasicTokenizer splits off besides category S* (its `_is_symbol`); the
# original keeps them inside words (the soft hyphen U+00AD is dropped as a control character)
PADDLENLP_SYMBOLS = "\u00b2\u00ba\u3007\u00b5\u00d8\u014b\u01b1"


def read_lines(data_dir, limit=None):
    """(file name, line) for every line of both corpus files, or the first `limit` of each."""
    lines = []
    for name in FILES:
        with open(os.path.join(data_dir, "corpus", name), encoding="utf-8") as f:
            lines += [(name, line.rstrip("\n")) for i, line in enumerate(f) if not limit or i < limit]
    return lines


def candidates(vocab):
    out = {"paddle_electra.ElectraTokenizer": ElectraTokenizer(vocab).tokenize}
    try:
        import logging
        logging.disable(logging.WARNING)
        from paddlenlp.transformers import ElectraTokenizer as PaddleNLPElectra
        out["paddlenlp 2.8 ElectraTokenizer"] = PaddleNLPElectra(vocab, do_lower_case=True).tokenize
    except ImportError as e:
        print(f"paddlenlp not available: {e}", file=sys.stderr)
    try:
        from transformers import BertTokenizer, BertTokenizerFast
        out["transformers BertTokenizer"] = BertTokenizer(vocab).tokenize
        out["transformers BertTokenizerFast"] = BertTokenizerFast(vocab).tokenize
    except ImportError as e:
        print(f"transformers not available: {e}", file=sys.stderr)
    return out


def first_diverging_word(ref, text, got):
    """The first of the reference's words (after basic tokenization) whose word pieces the other
    tokenizer does not reproduce at the same place, its reference pieces and the other's pieces
    there; None when every word matches (the other has extra pieces at the end)."""
    i = 0
    for word in reference.basic_tokenize(text):
        pieces = reference.wordpiece(word, ref.vocab)
        if got[i:i + len(pieces)] != pieces:
            return word, pieces, got[i:i + len(pieces) + 3]
        i += len(pieces)
    return None


def classify(word, ref_pieces, other_pieces, text):
    """A short cause for the first diverging word."""
    if len(word) > 100 and ref_pieces != ["[UNK]"] and other_pieces[:1] == ["[UNK]"]:
        return "word of 101..200 characters: [UNK] under a 100-character limit"
    if len(word) > 1 and any(unicodedata.category(c).startswith("S") or c in PADDLENLP_SYMBOLS
                             for c in word):
        return "symbol inside a word split off (category S*, or one of " + " ".join(PADDLENLP_SYMBOLS) + ")"
    if any(0x2B820 <= ord(c) <= 0x2B91F for c in word):
        return "CJK extension E U+2B820..2B91F not split"
    if "\u03c2" in word:
        return "final sigma"
    if any(w in text for w in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")):
        return "special-token text kept whole"
    return "other"


def first_divergence(ref_tokens, got):
    k = next((i for i, (x, y) in enumerate(zip(ref_tokens, got)) if x != y), min(len(ref_tokens), len(got)))
    return k


def code_point_sweep(args):
    ref = reference.ReferenceTokenizer(bundled_vocab_path())
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = ["a" + c + "b" for c in chars]
    want = [ref.tokenize(t) for t in texts]
    print(f"{len(texts)} code points, each as 'a' + c + 'b'; Unicode {unicodedata.unidata_version} "
          f"(this Python's unicodedata, which the reference uses)")
    results = {}
    for name, fn in candidates(bundled_vocab_path()).items():
        t = time.perf_counter()
        by_cat, examples = collections.Counter(), collections.defaultdict(list)
        for c, text, w in zip(chars, texts, want):
            g = fn(text)
            if g != w:
                cat = unicodedata.category(c)
                by_cat[cat] += 1
                if len(examples[cat]) < 3:
                    examples[cat].append(f"U+{ord(c):04X} {w} vs {g}")
        results[name] = {"code_points": sum(by_cat.values()), "by_category": dict(by_cat)}
        print(f"\n== {name}: {sum(by_cat.values())} code points differ ({time.perf_counter() - t:.0f} s)")
        for cat, n in by_cat.most_common():
            print(f"  {cat} {n:8d}   e.g. " + "; ".join(examples[cat]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--limit", type=int, default=None, help="the first N lines of each file only")
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--json", default=None, help="write the counts here")
    ap.add_argument("--code-points", action="store_true",
                    help="instead of the corpus: every code point inside a word ('a' + c + 'b'), "
                         "counted by Unicode category where a tokenizer differs")
    args = ap.parse_args(argv)
    if args.code_points:
        return code_point_sweep(args)

    named = read_lines(args.data_dir, args.limit)
    lines = [line for _, line in named]
    sizes = collections.Counter(name for name, _ in named)
    vocab = bundled_vocab_path()
    ref = reference.ReferenceTokenizer(vocab)
    t = time.perf_counter()
    want = [ref.tokenize(line) for line in lines]
    print(f"{len(lines)} lines ({', '.join(f'{n}: {sizes[n]}' for n in FILES)}), "
          f"reference in {time.perf_counter() - t:.1f} s")
    results = {}
    for name, fn in candidates(vocab).items():
        t = time.perf_counter()
        got = [fn(line) for line in lines]
        secs = time.perf_counter() - t
        causes, per_file, symbols = collections.Counter(), collections.Counter(), collections.Counter()
        examples = collections.defaultdict(list)
        for (fname, line), w, g in zip(named, want, got):
            if w == g:
                continue
            per_file[fname] += 1
            found = first_diverging_word(ref, line, g)
            if found:
                word, rp, op = found
                cause = classify(word, rp, op, line)
                if cause.startswith("symbol"):
                    symbols.update({c for c in word if unicodedata.category(c).startswith("S")
                                    or c in PADDLENLP_SYMBOLS})
            else:
                word, rp, op, cause = "", [], g[len(w):len(w) + 3], "other"
            causes[cause] += 1
            if len(examples[cause]) < args.examples:
                k = first_divergence(w, g)
                examples[cause].append({"word": word[:60], "word_chars": len(word), "reference": rp[:6], "other": op[:6],
                                        "context_reference": w[max(0, k - 2):k + 4],
                                        "context_other": g[max(0, k - 2):k + 4]})
        n_bad = sum(causes.values())
        results[name] = {"lines": len(lines), "disagreeing_lines": n_bad, "per_file": dict(per_file),
                         "symbols": dict(symbols),
                         "causes": dict(causes),
                         "examples": examples, "seconds": round(secs, 1)}
        print(f"\n== {name}: {n_bad} of {len(lines)} lines differ ({secs:.1f} s); by file: "
              + ", ".join(f"{n} {per_file[n]}" for n in FILES))
        for cause, n in causes.most_common():
            print(f"  {n:6d}  {cause}")
            for ex in examples[cause]:
                print(f"          word {ex['word']!r} ({ex['word_chars']} chars): reference "
                      f"{ex['reference']} vs {ex['other']}")
        if symbols:
            print("  symbols in those words (lines):", ", ".join(f"{c} U+{ord(c):04X} {n}"
                                                             for c, n in symbols.most_common(12)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()

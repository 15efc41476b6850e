"""Tokenizer throughput: paddle_electra's ElectraTokenizer against PaddleNLP's, on the same lines.

Both are called the way their users call them: one call on a list of texts with
`max_length`/`truncation`, returning input_ids, token_type_ids (and our attention_mask). Lines come
from the corpus under --data-dir (an even sample over both files); without it, from generated
text. Prints lines/s for each, the ratio, how many lines got identical input_ids, and the load
average (other processes on the machine slow both).

    python benchmarks/tokenizer_throughput.py [--data-dir ../shared/data] [--lines 10000]
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from paddle_electra.tokenizer import ElectraTokenizer, bundled_vocab_path  # noqa: E402

CORPUS = ("CLUECorpusSmall_sampled.txt", "peoples_daily_1998_01.txt")


def corpus_lines(data_dir: str, n: int):
    lines = []
    for name in CORPUS:
        with open(os.path.join(data_dir, "corpus", name), encoding="utf-8") as f:
            lines += [line.rstrip("\n") for line in f if line.strip()]
    step = max(1, len(lines) // n)
    return lines[::step][:n]


def generated_lines(vocab: dict, n: int, seed: int = 0):
    """Sentences of CJK characters from the vocab with some numbers, Latin words and punctuation."""
    rng = random.Random(seed)
    cjk = [t for t in vocab if len(t) == 1 and 0x4E00 <= ord(t) <= 0x9FFF]
    extras = ["，", "。", "、", "：", "2018", "12", "ELECTRA", "iPhone", "%", "（", "）"]
    return ["".join(rng.choice(extras) if rng.random() < 0.08 else rng.choice(cjk)
                    for _ in range(rng.randint(20, 300))) for _ in range(n)]


def timed(fn, lines, repeat):
    fn(lines[:50])  # warm up
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(lines)
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tokenizer; the best is kept")
    args = ap.parse_args(argv)

    ours = ElectraTokenizer()
    if os.path.isdir(os.path.join(args.data_dir, "corpus")):
        lines, source = corpus_lines(args.data_dir, args.lines), f"corpus under {os.path.abspath(args.data_dir)}"
    else:
        lines, source = generated_lines(ours.vocab, args.lines), "generated text (no corpus found)"
    chars = sum(map(len, lines))
    print(f"{datetime.date.today()}  {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}")
    print(f"{len(lines)} lines, {chars} characters, from {source}; max_length {args.max_length}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def run_ours(texts):
        return ours(texts, max_length=args.max_length, truncation=True)["input_ids"]

    results = {"paddle_electra ElectraTokenizer": timed(run_ours, lines, args.repeat)}
    try:
        logging.disable(logging.WARNING)
        from paddlenlp.transformers import ElectraTokenizer as PaddleNLPElectra
        theirs = PaddleNLPElectra(bundled_vocab_path(), do_lower_case=True)

        def run_theirs(texts):
            return theirs(texts, max_length=args.max_length, truncation=True)["input_ids"]

        results["paddlenlp ElectraTokenizer"] = timed(run_theirs, lines, args.repeat)
    except ImportError as e:
        print(f"paddlenlp not available ({e}): timing ours only")

    for name, (secs, _) in results.items():
        print(f"{name:34s} {secs:8.2f} s  {len(lines) / secs:10.0f} lines/s  {chars / secs / 1e6:6.2f} M chars/s")
    if len(results) == 2:
        (s_ours, ids_ours), (s_theirs, ids_theirs) = results.values()
        same = sum(a == b for a, b in zip(ids_ours, ids_theirs))
        print(f"ratio (ours / paddlenlp lines/s): {s_theirs / s_ours:.1f}x; "
              f"identical input_ids on {same} of {len(lines)} lines")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

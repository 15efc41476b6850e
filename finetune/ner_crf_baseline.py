"""An independent baseline for MSRA NER (issue 20): a linear-chain CRF on character features
(sklearn-crfsuite), trained on the same seeded sample of train sentences the fine-tuning protocol uses
and scored on the same dev set with the same scorer (seqeval chunk F1, `tasks.metrics.chunk_f1`).
A fine-tuned encoder far below it on the same split points at the recipe, not at the data.

    python finetune/ner_crf_baseline.py --data-dir ../shared/data --n-train 5000 [--max-length 128]

`--max-length N` predicts `O` past the N-2 first characters of a sentence, as the fine-tuned model
does with max_seq_length N ([CLS] and [SEP] take two places), so the two are scored alike.
Needs `pip install sklearn-crfsuite` (the bench extra).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def char_features(chars, i):
    """The character, its neighbours within two places, the bigrams around it, and its kind."""
    def at(j):
        return chars[j] if 0 <= j < len(chars) else ("<s>" if j < 0 else "</s>")
    c = chars[i]
    return {"c": c, "c-1": at(i - 1), "c+1": at(i + 1), "c-2": at(i - 2), "c+2": at(i + 2),
            "c-1c": at(i - 1) + c, "cc+1": c + at(i + 1), "c-1c+1": at(i - 1) + at(i + 1),
            "digit": c.isdigit(), "alpha": c.isascii() and c.isalpha(), "bias": 1.0}


def sentence_features(chars):
    return [char_features(chars, i) for i in range(len(chars))]


def read_split(data_dir: str, split: str, limit):
    """The protocol's examples through the library's own reader and seeded subset rule."""
    from paddle_electra.finetuning.config import FinetuneConfig
    from paddle_electra.finetuning.tasks import get_task
    config = FinetuneConfig(data_dir=os.path.join(data_dir, "msra_ner"), task_names=["msra_ner"],
                              train_file=os.path.join(data_dir, "msra_ner", "train.txt"),
                              dev_file=os.path.join(data_dir, "msra_ner", "dev.txt"),
                              max_train_examples=limit)
    return get_task("msra_ner", config, None).get_examples(split)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    p.add_argument("--n-train", type=int, default=5000, help="train sentences (the protocol's seeded sample)")
    p.add_argument("--max-length", type=int, default=None, help="score as a model with this max_seq_length")
    p.add_argument("--c1", type=float, default=0.05)
    p.add_argument("--c2", type=float, default=0.05)
    p.add_argument("--max-iterations", type=int, default=200)
    p.add_argument("--out", default=None, help="write the scores as JSON here")
    a = p.parse_args(argv)
    import sklearn_crfsuite
    from paddle_electra.tasks.metrics import chunk_f1

    train = read_split(a.data_dir, "train", a.n_train)
    dev = read_split(a.data_dir, "dev", None)
    t0 = time.time()
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=a.c1, c2=a.c2, max_iterations=a.max_iterations)
    crf.fit([sentence_features(ex.words) for ex in train], [list(ex.tags) for ex in train])
    predicted = crf.predict([sentence_features(ex.words) for ex in dev])
    if a.max_length:
        keep = a.max_length - 2
        predicted = [p[:keep] + ["O"] * max(0, len(p) - keep) for p in predicted]
    scores = chunk_f1([list(ex.tags) for ex in dev], predicted)
    result = {"model": "CRF (sklearn-crfsuite, character window features)", "train_sentences": len(train),
              "dev_sentences": len(dev), "max_length": a.max_length, "c1": a.c1, "c2": a.c2,
              "train_seconds": round(time.time() - t0, 1), **{f"dev_{k}": round(v, 2) for k, v in scores.items()}}
    print(json.dumps(result, ensure_ascii=False))
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(result, f, ensure_ascii=False, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

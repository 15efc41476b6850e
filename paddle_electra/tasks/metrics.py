"""Scores as the published tables compute them.

- classification: accuracy (percent), as the original's AccuracyScorer.
- tagging: seqeval's chunk-level precision / recall / F1 (percent), BIO scheme.
- regression: Pearson and Spearman correlation (percent), as GLUE reports STS-B.
- span QA: the official CMRC 2018 evaluation (cmrc2018_evaluate.py v5, which HFL also uses for
  DRCD), reproduced for Python 3:
    * text is lower-cased and stripped;
    * a CJK character (U+4E00..U+9FA5) or one of the script's punctuation characters is a token of
      its own; every other run of characters is word-tokenized with NLTK's Treebank-style
      tokenizer (the official script calls `nltk.word_tokenize`);
    * F1 uses punctuation-stripped tokens and the longest common *contiguous* token substring;
      EM compares the punctuation-stripped strings;
    * the best score over the reference answers counts; a question without a prediction scores 0
      (and is counted in SKIP); EM, F1 and their mean AVERAGE are percentages over all questions.
  The script's quirks are kept: its punctuation list holds the two-character string "……" (so a
  single "…" is never punctuation), removed punctuation does not split the run around it, and ASCII
  "." "," "?" "!" are not in the list.
  One deviation, by design: `nltk.word_tokenize` first splits a run into sentences with the punkt
  model, which must be downloaded; here each run is tokenized as one line (NLTK's own
  `preserve_line=True` path), which needs no data. The two differ only for a run of non-CJK text
  holding a sentence end followed by more text (e.g. "end. Next"); see docs/finetuning.md.
"""
from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict
from typing import Dict, List, Sequence

import numpy as np


# --- classification -----------------------------------------------------------------------------
def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float(100.0 * (predictions == labels).mean())


# --- tagging ------------------------------------------------------------------------------------
def chunk_f1(true_tags: List[List[str]], pred_tags: List[List[str]]) -> Dict[str, float]:
    """seqeval's default (CoNLL-style) chunk precision / recall / F1 in percent."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    for i, (t, p) in enumerate(zip(true_tags, pred_tags)):
        if len(t) != len(p):
            raise ValueError(f"sentence {i}: {len(t)} gold tags but {len(p)} predicted")
    return {"precision": 100.0 * precision_score(true_tags, pred_tags),
            "recall": 100.0 * recall_score(true_tags, pred_tags),
            "f1": 100.0 * f1_score(true_tags, pred_tags)}


# --- CMRC 2018 / DRCD -----------------------------------------------------------------------------
CMRC_PUNCTUATION = ['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                    '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
                    '「', '」', '（', '）', '－', '～', '『', '』']
_CJK = re.compile('[\u4e00-\u9fa5]')
_word_tokenizer = None


def word_tokenize(text: str) -> List[str]:
    """NLTK's Treebank-style word tokenizer on one line (nltk.word_tokenize(preserve_line=True))."""
    global _word_tokenizer
    if _word_tokenizer is None:
        from nltk.tokenize.destructive import NLTKWordTokenizer
        _word_tokenizer = NLTKWordTokenizer()
    return _word_tokenizer.tokenize(text)


def mixed_segmentation(text, rm_punc: bool = False) -> List[str]:
    text = str(text).lower().strip()
    segs, run = [], ""
    for char in text:
        if rm_punc and char in CMRC_PUNCTUATION:
            continue
        if _CJK.search(char) or char in CMRC_PUNCTUATION:
            if run:
                segs.extend(word_tokenize(run))
                run = ""
            segs.append(char)
        else:
            run += char
    if run:
        segs.extend(word_tokenize(run))
    return segs


def remove_punctuation(text) -> str:
    return "".join(c for c in str(text).lower().strip() if c not in CMRC_PUNCTUATION)


def longest_common_substring(a: Sequence, b: Sequence) -> int:
    """Length of the longest common contiguous run of tokens."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_f1(answers: Sequence[str], prediction) -> float:
    pred = mixed_segmentation(prediction, rm_punc=True)
    scores = []
    for ans in answers:
        gold = mixed_segmentation(ans, rm_punc=True)
        lcs = longest_common_substring(gold, pred)
        if lcs == 0:
            scores.append(0.0)
            continue
        p, r = lcs / len(pred), lcs / len(gold)
        scores.append(2 * p * r / (p + r))
    return max(scores) if scores else 0.0


def cmrc_em(answers: Sequence[str], prediction) -> float:
    pred = remove_punctuation(prediction)
    return 1.0 if any(remove_punctuation(a) == pred for a in answers) else 0.0


def iter_questions(dataset: Dict):
    """(id, [answer texts]) of every question of a SQuAD-format dataset."""
    for article in dataset["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                yield str(qa["id"]).strip(), [a["text"] for a in qa.get("answers", [])]


def cmrc_evaluate(dataset: Dict, predictions: Dict[str, str], warn=sys.stderr) -> "OrderedDict":
    """The official numbers: AVERAGE, F1, EM (percent, 3 decimals as strings), TOTAL, SKIP."""
    f1 = em = 0.0
    total = skip = 0
    for qid, answers in iter_questions(dataset):
        total += 1
        if qid not in predictions:
            if warn is not None:
                warn.write(f"Unanswered question: {qid}\n")
            skip += 1
            continue
        f1 += cmrc_f1(answers, predictions[qid])
        em += cmrc_em(answers, predictions[qid])
    if total == 0:
        raise ValueError("the dataset holds no questions")
    F1, EM = 100.0 * f1 / total, 100.0 * em / total
    out = OrderedDict()
    out["AVERAGE"] = "%.3f" % ((EM + F1) * 0.5)
    out["F1"] = "%.3f" % F1
    out["EM"] = "%.3f" % EM
    out["TOTAL"] = total
    out["SKIP"] = skip
    return out


def cmrc_evaluate_files(dataset_file: str, prediction_file: str) -> "OrderedDict":
    def load(path, what):
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    dataset, preds = load(dataset_file, "dataset"), load(prediction_file, "prediction")
    if not isinstance(dataset, dict) or "data" not in dataset:
        raise ValueError(f"{dataset_file}: not a SQuAD-format dataset (no top-level 'data')")
    if not isinstance(preds, dict):
        raise ValueError(f"{prediction_file}: expected a JSON object {{question_id: answer_text}}")
    out = cmrc_evaluate(dataset, preds)
    out["FILE"] = prediction_file
    return out


# --- regression ---------------------------------------------------------------------------------
def correlations(predictions: Sequence[float], labels: Sequence[float]) -> Dict[str, float]:
    """Pearson and Spearman correlation in percent (GLUE's STS-B numbers), by scipy."""
    from scipy.stats import pearsonr, spearmanr
    predictions, labels = np.asarray(predictions, "float64"), np.asarray(labels, "float64")
    if len(labels) < 2:
        raise ValueError(f"correlations need at least 2 examples, got {len(labels)}")
    return {"pearson": float(100.0 * pearsonr(predictions, labels)[0]),
            "spearman": float(100.0 * spearmanr(predictions, labels)[0])}

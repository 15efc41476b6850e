"""The bundled sample of `make demo` (demo_data/): no evaluation text in what the demo trains on.

The demo pretrains on corpus_sample.txt plus the texts of chnsenticorp/train.tsv (task-adaptive
pretraining) and fine-tunes on train.tsv; it scores on chnsenticorp/dev.tsv. ChnSentiCorp's official
splits share texts (687 train rows repeat a dev or test text), so the sample's train split leaves
those out; these tests check it, and, when ../shared/data is there, that the sample's splits are
subsets of the official ones.
"""
import os

import pytest

from paddle_electra.finetuning.tasks import read_tsv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "demo_data")


def _rows(path):
    rows = read_tsv(path)
    assert rows[0] == ["label", "text_a"], f"{path}: header {rows[0]}"
    for i, r in enumerate(rows[1:], start=2):
        assert len(r) == 2 and r[0] in ("0", "1") and r[1].strip(), f"{path}, line {i}: {r!r}"
    return [tuple(r) for r in rows[1:]]


@pytest.fixture(scope="module")
def sample():
    cls = os.path.join(SAMPLE, "chnsenticorp")
    with open(os.path.join(SAMPLE, "corpus_sample.txt"), encoding="utf-8") as f:
        corpus = f.read()
    return _rows(os.path.join(cls, "train.tsv")), _rows(os.path.join(cls, "dev.tsv")), corpus


def _leaks(texts, train, corpus):
    """Evaluation texts found in the training texts (whole) or anywhere in the corpus text."""
    train_texts = {t.strip() for _, t in train}
    return [t for t in {t.strip() for t in texts} if t in train_texts or t in corpus]


def test_the_sample_is_small_and_both_classes_are_there(sample):
    train, dev, _ = sample
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(SAMPLE) for f in fs)
    assert size < 3.2e6, f"demo_data is {size / 1e6:.2f} MB"
    for name, rows in (("train", train), ("dev", dev)):
        share = sum(lab == "1" for lab, _ in rows) / len(rows)
        assert 0.3 < share < 0.7, f"{name}: {share:.2f} positive"


def test_no_dev_text_in_the_sample_train_split_or_the_pretraining_text(sample):
    train, dev, corpus = sample
    assert _leaks([t for _, t in dev], train, corpus) == []
    assert len({t for _, t in train}) == len(train), "train.tsv repeats a text"


def test_the_sample_is_a_subset_of_the_official_splits_without_their_dev_or_test_texts(sample, shared_data):
    train, dev, corpus = sample
    official = os.path.join(shared_data, "chnsenticorp")
    off_train, off_dev, off_test = (_rows(os.path.join(official, f"{s}.tsv")) for s in ("train", "dev", "test"))
    assert set(train) <= set(off_train), "a sample train row is not in the official train split"
    assert set(dev) <= set(off_dev), "a sample dev row is not in the official dev split"
    assert _leaks([t for _, t in off_dev + off_test], train, corpus) == []

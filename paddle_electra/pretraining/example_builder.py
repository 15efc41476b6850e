"""The original's example builder (google-research/electra build_pretraining_dataset.py): a stream
of tokenized lines -> examples `[CLS] A [SEP] B [SEP]`. Lines accumulate until `target_length`
tokens; 10% of examples get a single segment and 5% a random shorter target length. The
first-segment rule is Google's fixed one by default; HFL's Chinese ELECTRA was built with the
version before that fix (google-research/electra commit 1ed0852, issue #20), available as
`hfl_segment_bug=True`."""
from __future__ import annotations

import random
from typing import List, Optional, Sequence, Tuple


class ExampleBuilder:
    """Turns a stream of tokenized lines into examples, as the original's ExampleBuilder
    (randomness from `rng`, a random.Random, so each work unit is reproducible)."""

    def __init__(self, max_length: int, cls_id: int, sep_id: int, rng: random.Random,
                 hfl_segment_bug: bool = False):
        if max_length < 5:
            raise ValueError(f"max_seq_length must be at least 5, got {max_length}")
        self.max_length, self.cls_id, self.sep_id = max_length, cls_id, sep_id
        self.rng, self.hfl_segment_bug = rng, hfl_segment_bug
        self._sentences: List[List[int]] = []
        self._length = 0
        self._target_length = max_length

    def add_line(self, ids: Sequence[int], blank: bool = False) -> Optional[Tuple[List[int], int]]:
        """Add one line (its token ids; `blank` for an empty line, which ends a document).
        Returns an example (ids, length of `[CLS] A [SEP]`) when one is complete."""
        if blank and self._length != 0:
            return self._create_example()
        self._sentences.append(list(ids))
        self._length += len(ids)
        if self._length >= self._target_length:
            return self._create_example()
        return None

    def flush(self) -> Optional[Tuple[List[int], int]]:
        """End of input: what the original does with the blank line it adds after each file."""
        return self.add_line([], blank=True)

    def _goes_first(self, first, second, sentence, first_target) -> bool:
        if self.hfl_segment_bug:
            # before the fix: `first_segment` / `second_segment` tested for being non-empty, so once
            # the first segment has a sentence every later sentence joins it
            return bool(first) or len(first) + len(sentence) < first_target or (
                bool(second) and len(first) < first_target and self.rng.random() < 0.5)
        return len(first) == 0 or len(first) + len(sentence) < first_target or (
            len(second) == 0 and len(first) < first_target and self.rng.random() < 0.5)

    def _create_example(self):
        rng = self.rng
        if rng.random() < 0.1:  # one segment, as in classification tasks
            first_target = 100000
        else:  # -3 for [CLS] and the two [SEP]
            first_target = (self._target_length - 3) // 2
        first, second = [], []
        for sentence in self._sentences:
            if self._goes_first(first, second, sentence, first_target):
                first += sentence
            else:
                second += sentence
        first = first[: self.max_length - 2]
        second = second[: max(0, self.max_length - len(first) - 3)]
        self._sentences, self._length = [], 0
        # the *next* example may get a random shorter target length
        self._target_length = rng.randint(5, self.max_length) if rng.random() < 0.05 else self.max_length
        ids = [self.cls_id] + first + [self.sep_id]
        len_a = len(ids)
        if second:
            ids += second + [self.sep_id]
        return ids, len_a

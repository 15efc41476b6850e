"""Pretraining examples: the original's example builder, a sharded memory-mapped format, and the
deterministic, resumable order in which the trainer reads them.

Input text: one sentence (or paragraph) a line, a blank line between documents, as the original's
build_pretraining_dataset.py. Lines accumulate until `target_length` tokens; the example is
`[CLS] A [SEP] B [SEP]` (10% of examples get a single segment) and 5% of examples get a random
shorter target length. The first-segment rule is Google's fixed one by default; HFL's Chinese
ELECTRA was built with the version before that fix (google-research/electra commit 1ed0852, issue
#20), available as `hfl_segment_bug=True`.

On disk (one shard per work unit, written by several processes):
  shard-00000.bin   token ids of all examples back to back (uint16 when the vocab fits), with
                    [CLS]/[SEP], without padding
  shard-00000.idx   int64 [n, 3]: start offset, length, length of `[CLS] A [SEP]`
  index.json        format, max_seq_length, dtype, vocab md5, shards and counts, a summary
The trainer memory-maps the shards it reads (each rank its own range of them, at most
MAX_MAPPED_BYTES at once), so a corpus larger than memory or address space streams from the page cache.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..io import DataError  # one class for every data error: here a pretraining data folder is missing,
# incomplete or does not fit the run
from ..io import OutputKind, output_dir

FORMAT = "paddle-electra-pretraining-v1"
INDEX_NAME = "index.json"
# a previous build (what build_dataset writes), which a new build replaces without --overwrite
DATASET_DIR = OutputKind("pretraining dataset", (INDEX_NAME,), (INDEX_NAME, "shard-*.bin", "shard-*.idx"))


# --- the example builder ---------------------------------------------------------------------------
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


# --- splitting the input into work units ------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")


def split_sentences(line: str) -> List[str]:
    """For text with one document a line: cut after Chinese/ASCII sentence-final punctuation."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(line)) if s]


# --- task-adaptive text: the unlabeled text of fine-tuning training files ---------------------------------
def _example_texts(example) -> List[str]:
    """The texts of one fine-tuning example, labels left out: both sentences of a pair, a tagged
    sentence's characters, a reading-comprehension question and its context."""
    if hasattr(example, "words"):
        return ["".join(example.words)]
    if hasattr(example, "context"):
        return [example.question, example.context]
    return [t for t in (example.text_a, example.text_b) if t]


def _absolute_spec(spec: str) -> str:
    name, _, path = spec.partition("=")
    return f"{name}={os.path.abspath(path)}"


def _read_task_file(spec: str) -> list:
    """The examples of TASK=FILE, read by that fine-tuning task's reader."""
    from ..finetuning.tasks import TASKS
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise DataError(f"task text {spec!r}: expected TASK=FILE, e.g. chnsenticorp=train.tsv")
    if name not in TASKS:
        raise DataError(f"task text {spec!r}: unknown task {name!r}; registered: {', '.join(sorted(TASKS))}")
    if not os.path.isfile(path):
        raise DataError(f"task text {spec!r}: no such file {path}")
    return TASKS[name](None, None).read_file(path, "train")


class EvaluationTexts:
    """The texts of evaluation files (each TASK=FILE), to keep them out of pretraining: `in_text(t)`
    is true when one of them is in `t` (whitespace and case ignored, as the tokenizer ignores them),
    so a train text that holds a dev text with more around it is caught too. Texts of `window`
    characters or more are found through their first `window` characters, shorter ones only as the
    whole of `t`."""

    def __init__(self, specs: Sequence[str], window: int = 8):
        self.window, self.whole, self.starts = window, set(), {}
        for spec in specs:
            for e in _read_task_file(spec):
                for t in _example_texts(e):
                    t = self.normal(t)
                    if not t:
                        continue
                    self.whole.add(t)
                    if len(t) >= window:
                        self.starts.setdefault(t[:window], set()).add(t)

    @staticmethod
    def normal(text: str) -> str:
        return "".join(text.split()).lower()

    def in_text(self, text: str) -> bool:
        t = self.normal(text)
        if t in self.whole:
            return True
        w = self.window
        for i in range(len(t) - w + 1):
            hit = self.starts.get(t[i:i + w])
            if hit and any(t.startswith(h, i) for h in hit):
                return True
        return False


def write_task_texts(train: Sequence[str], banned: EvaluationTexts, path: str, group: int = 10) -> dict:
    """Write the unlabeled text of the fine-tuning files `train` (each TASK=FILE, read by that task's
    reader) to `path` in the --input format, sentences a line. An example is left out when it holds one
    of the `banned` evaluation texts (the dev and test splits: some official splits share texts) and when
    it repeats an earlier one; a reading-comprehension context is written
    once, its questions are not (the answer is in the context). Short examples (sentences, pairs,
    reviews) are grouped `group` to a document, in file order, so that examples of max_seq_length are
    filled rather than padded. Returns the counts."""
    seen, counts = set(), {"examples": 0, "written": 0, "excluded": 0, "repeated": 0}
    with open(path, "w", encoding="utf-8") as f:
        for spec in train:
            for e in _read_task_file(spec):
                counts["examples"] += 1
                texts = [t.strip() for t in _example_texts(e)]
                doc = [texts[1]] if hasattr(e, "context") else texts
                if any(banned.in_text(t) for t in doc):
                    counts["excluded"] += 1
                    continue
                if tuple(doc) in seen:
                    counts["repeated"] += 1
                    continue
                seen.add(tuple(doc))
                counts["written"] += 1
                in_doc = 1 if hasattr(e, "context") else group
                f.write("".join(s + "\n" for t in doc for s in split_sentences(t))
                        + ("\n" if counts["written"] % in_doc == 0 else ""))
            f.write("\n")  # a file's last document ends with it
    return counts


def drop_evaluation_lines(path: str, out: str, banned: EvaluationTexts) -> int:
    """Copy the text file `path` to `out` without the lines that hold an evaluation text (a raw corpus
    can quote a sentence that an evaluation set took from the same source). Returns how many went."""
    dropped = 0
    with open(path, encoding="utf-8", errors="strict") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            if line.strip() and banned.in_text(line):
                dropped += 1
            else:
                dst.write(line)
    return dropped


@dataclass
class WorkUnit:
    index: int
    path: str
    start: int  # byte offsets, on line boundaries
    end: int
    line_is_document: bool = False


def plan_units(paths: Sequence[str], target_bytes: int, docs_per_line: Sequence[str] = ()) -> List[WorkUnit]:
    units = []
    for path, line_is_document in [(p, False) for p in paths] + [(p, True) for p in docs_per_line]:
        if not os.path.isfile(path):
            raise DataError(f"input file not found: {path}")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = 0
            while start < size:
                end = min(size, start + target_bytes)
                if end < size:  # move to the start of the next line
                    f.seek(end)
                    f.readline()
                    end = f.tell()
                units.append(WorkUnit(len(units), path, start, end, line_is_document))
                start = end
    return units


def _read_lines(unit: WorkUnit) -> Iterator[str]:
    with open(unit.path, "rb") as f:
        f.seek(unit.start)
        pos = unit.start
        while pos < unit.end:
            raw = f.readline()
            if not raw:
                break
            pos += len(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                at = pos - len(raw) + e.start  # the offending byte itself, not the start of its line
                raise DataError(f"{unit.path}: byte {at} ({raw[e.start]:#04x}): not UTF-8 ({e.reason}); save the "
                                f"file as UTF-8") from None


# --- one work unit -> one shard -------------------------------------------------------------------------
@dataclass
class BuildOptions:
    output_dir: str
    vocab_file: str
    max_seq_length: int = 128
    seed: int = 12345
    hfl_segment_bug: bool = False
    blanks_separate_docs: bool = True


_TOKENIZER = None


def _tokenizer(vocab_file):
    global _TOKENIZER
    if _TOKENIZER is None or _TOKENIZER.vocab_file != vocab_file:
        from ..tokenizer import ElectraTokenizer
        _TOKENIZER = ElectraTokenizer(vocab_file)
    return _TOKENIZER


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _lines_to_items(lines, opts: BuildOptions, line_is_document: bool):
    """(text or None for a document break) in input order, as the original's writer feeds its builder."""
    for raw in lines:
        line = raw.strip()
        if line_is_document:
            if line:
                yield from split_sentences(line)
                yield None
        elif line:
            yield line
        elif opts.blanks_separate_docs:
            yield None


def build_unit(unit: WorkUnit, opts: BuildOptions, batch_lines: int = 2000) -> dict:
    tok = _tokenizer(opts.vocab_file)
    dtype = np.uint16 if len(tok.vocab) <= 65536 else np.int32
    rng = random.Random(opts.seed * 1_000_003 + unit.index)
    builder = ExampleBuilder(opts.max_seq_length, tok.cls_token_id, tok.sep_token_id, rng, opts.hfl_segment_bug)
    name = shard_name(unit.index)
    bin_path, idx_path = os.path.join(opts.output_dir, name + ".bin"), os.path.join(opts.output_dir, name + ".idx")
    stats = dict(unit=unit.index, examples=0, tokens=0, documents=0, lines=0, two_segments=0,
                 bytes=unit.end - unit.start, long_lines=0, long_line_pieces=0)
    # a line longer than an example holds ends the example being built, then is cut into examples of one
    # segment each (the original kept its first max_seq_length - 2 tokens and dropped the rest: a 10 MB line
    # gave one example)
    piece = opts.max_seq_length - 2
    offset = 0
    in_doc = False
    with open(bin_path + ".tmp", "wb") as fb, open(idx_path + ".tmp", "wb") as fi:
        def emit(example):
            nonlocal offset
            if example is None:
                return
            ids, len_a = example
            fb.write(np.asarray(ids, dtype=dtype).tobytes())
            fi.write(np.asarray([offset, len(ids), len_a], dtype=np.int64).tobytes())
            offset += len(ids)
            stats["examples"] += 1
            stats["tokens"] += len(ids)
            stats["two_segments"] += int(len(ids) > len_a)

        def feed(chunk):
            nonlocal in_doc
            ids = iter(tok.encode_batch_ids([t for t in chunk if t is not None]))
            for item in chunk:
                if item is None:
                    stats["documents"] += int(in_doc)
                    in_doc = False
                    emit(builder.add_line([], blank=True))
                else:
                    in_doc = True
                    line_ids = next(ids)
                    if len(line_ids) <= piece:
                        emit(builder.add_line(line_ids))
                        continue
                    stats["long_lines"] += 1
                    emit(builder.flush())  # what came before it
                    for k in range(0, len(line_ids), piece):
                        part = list(line_ids[k:k + piece])
                        emit(([tok.cls_token_id] + part + [tok.sep_token_id], len(part) + 2))
                        stats["long_line_pieces"] += 1

        chunk = []
        for item in _lines_to_items(_counted(_read_lines(unit), stats), opts, unit.line_is_document):
            chunk.append(item)
            if len(chunk) >= batch_lines:
                feed(chunk)
                chunk = []
        feed(chunk)
        stats["documents"] += int(in_doc)
        emit(builder.flush())
    os.replace(bin_path + ".tmp", bin_path)
    os.replace(idx_path + ".tmp", idx_path)
    return stats


def _counted(lines, stats):
    for line in lines:
        stats["lines"] += 1
        yield line


def _build_unit_star(args):
    return build_unit(*args)


def file_md5(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_dataset(inputs: Sequence[str], opts: BuildOptions, num_processes: int = 1,
                  unit_bytes: Optional[int] = None, progress: bool = True,
                  docs_per_line: Sequence[str] = (), overwrite: bool = False,
                  sources: Optional[Dict[str, List[str]]] = None, protect: Sequence[str] = ()) -> dict:
    """Build the shards and index.json into opts.output_dir (written to a temporary folder and
    renamed, so an interrupted build leaves no half folder). Returns the index. `inputs` are in the
    original's format; `docs_per_line` files hold one whole document a line. When the inputs are
    derived files (run_build's filtered copies), `sources` is what the index records instead (the
    user's files and options) and `protect` the user's files, which the output may not hold either."""
    from tqdm import tqdm
    inputs, docs_per_line = list(inputs or []), list(docs_per_line or [])
    if not inputs and not docs_per_line:
        raise DataError("no input files")
    total_bytes = sum(os.path.getsize(p) for p in inputs + docs_per_line if os.path.isfile(p))
    if unit_bytes is None:  # enough units to keep every process busy, at most 32 MB each
        unit_bytes = max(1 << 16, min(32 << 20, total_bytes // max(1, 4 * num_processes) + 1))
    units = plan_units(inputs, unit_bytes, docs_per_line)
    t0 = time.time()
    final_dir = opts.output_dir
    recorded = sources or {"inputs": [os.path.abspath(p) for p in inputs],
                           "docs_per_line_inputs": [os.path.abspath(p) for p in docs_per_line]}
    with output_dir(final_dir, DATASET_DIR, inputs=inputs + docs_per_line + list(protect) + [opts.vocab_file],
                    overwrite=overwrite) as tmp:
        o = BuildOptions(**{**opts.__dict__, "output_dir": tmp})
        results = []
        bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="building", disable=not progress)
        work = [(u, o) for u in units]
        if num_processes > 1 and len(units) > 1:
            import multiprocessing as mp
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            with mp.get_context("spawn").Pool(min(num_processes, len(units))) as pool:
                for r in pool.imap_unordered(_build_unit_star, work):
                    results.append(r)
                    bar.update(r["bytes"])
                    bar.set_postfix(examples=sum(x["examples"] for x in results))
        else:
            for w in work:
                r = build_unit(*w)
                results.append(r)
                bar.update(r["bytes"])
                bar.set_postfix(examples=sum(x["examples"] for x in results))
        bar.close()
        results.sort(key=lambda r: r["unit"])
        tok = _tokenizer(opts.vocab_file)
        n_ex = sum(r["examples"] for r in results)
        n_tok = sum(r["tokens"] for r in results)
        summary = {
            "documents": sum(r["documents"] for r in results),
            "lines": sum(r["lines"] for r in results),
            "long_lines": sum(r["long_lines"] for r in results),  # cut into pieces of an example each
            "long_line_pieces": sum(r["long_line_pieces"] for r in results),
            "examples": n_ex,
            "tokens": n_tok,
            "two_segment_share": (sum(r["two_segments"] for r in results) / n_ex) if n_ex else 0.0,
            "padding_share": (1 - n_tok / (n_ex * opts.max_seq_length)) if n_ex else 0.0,
            "input_bytes": total_bytes,
            "seconds": round(time.time() - t0, 2),
        }
        index = {
            "format": FORMAT,
            "max_seq_length": opts.max_seq_length,
            "dtype": "uint16" if len(tok.vocab) <= 65536 else "int32",
            "vocab_size": len(tok.vocab),
            "vocab_md5": file_md5(opts.vocab_file),
            "special_ids": {"pad": tok.pad_token_id, "cls": tok.cls_token_id, "sep": tok.sep_token_id,
                            "mask": tok.mask_token_id},
            "options": {"seed": opts.seed, "hfl_segment_bug": opts.hfl_segment_bug,
                        **recorded},
            "shards": [{"name": shard_name(r["unit"]), "examples": r["examples"], "tokens": r["tokens"]}
                       for r in results],
            "summary": summary,
        }
        if n_ex == 0:
            raise DataError(f"no examples: the inputs {inputs + docs_per_line} hold no text")
        with open(os.path.join(tmp, INDEX_NAME), "w", encoding="utf-8") as f:
            json.dump(index, f, indent=2, ensure_ascii=False)
    return index


# --- reading ------------------------------------------------------------------------------------------
MAX_MAPPED_BYTES = 1 << 30  # shards mapped at once by one reader (least recently used unmapped first)


class PretrainingData:
    """The examples of a built folder. `batch(indices)` -> padded numpy arrays.

    Shards are memory-mapped when an example of theirs is first read and unmapped again (least
    recently used first) once more than `max_mapped_bytes` are mapped, so a process maps only the
    shards of the examples it reads (ExampleOrder gives each rank a contiguous range) and never
    more address space than that bound, whatever the corpus size."""

    def __init__(self, path: str, max_mapped_bytes: int = MAX_MAPPED_BYTES):
        index_file = os.path.join(path, INDEX_NAME)
        if not os.path.exists(index_file):
            raise DataError(f"{path}: no {INDEX_NAME}; build it with pretrain/build_pretraining_dataset.py")
        with open(index_file, encoding="utf-8") as f:
            self.index = json.load(f)
        if self.index.get("format") != FORMAT:
            raise DataError(f"{index_file}: format {self.index.get('format')!r}, expected {FORMAT!r}")
        self.path = path
        self.max_seq_length = int(self.index["max_seq_length"])
        self.special_ids = self.index["special_ids"]
        self._dtype = np.dtype(self.index["dtype"])
        self._shards, starts = [], [0]
        for s in self.index["shards"]:
            bin_path, idx_path = os.path.join(path, s["name"] + ".bin"), os.path.join(path, s["name"] + ".idx")
            for p in (bin_path, idx_path):
                if not os.path.exists(p):
                    raise DataError(f"{path}: shard file {os.path.basename(p)} listed in {INDEX_NAME} is missing")
            n_tok, n_ex = s["tokens"], s["examples"]
            if os.path.getsize(bin_path) != n_tok * self._dtype.itemsize or os.path.getsize(idx_path) != n_ex * 24:
                raise DataError(f"{path}: shard {s['name']} has the wrong size (truncated or overwritten?)")
            self._shards.append((bin_path, idx_path, n_tok, n_ex))
            starts.append(starts[-1] + n_ex)
        self._starts = np.asarray(starts, dtype=np.int64)
        self.num_examples = int(self._starts[-1])
        self.max_mapped_bytes = max_mapped_bytes
        self._mapped: "collections.OrderedDict[int, tuple]" = collections.OrderedDict()
        self._mapped_bytes = 0

    def __len__(self):
        return self.num_examples

    def shard_of(self, i):
        """Shard number(s) holding example(s) i."""
        return np.searchsorted(self._starts, i, side="right") - 1

    def shard_names(self, lo: int, hi: int) -> List[str]:
        """Names of the shards holding examples lo..hi-1."""
        if hi <= lo:
            return []
        first, last = int(self.shard_of(lo)), int(self.shard_of(hi - 1))
        return [self.index["shards"][s]["name"] for s in range(first, last + 1)]

    def _map(self, shard: int):
        m = self._mapped.get(shard)
        if m is not None:
            self._mapped.move_to_end(shard)
            return m
        bin_path, idx_path, n_tok, n_ex = self._shards[shard]
        m = (np.memmap(bin_path, dtype=self._dtype, mode="r", shape=(n_tok,)) if n_tok else np.zeros(0, self._dtype),
             np.memmap(idx_path, dtype=np.int64, mode="r", shape=(n_ex, 3)) if n_ex else np.zeros((0, 3), np.int64))
        self._mapped[shard] = m
        self._mapped_bytes += n_tok * self._dtype.itemsize + n_ex * 24
        while self._mapped_bytes > self.max_mapped_bytes and len(self._mapped) > 1:
            old, _ = self._mapped.popitem(last=False)  # the last reference: numpy unmaps it
            self._mapped_bytes -= self._shards[old][2] * self._dtype.itemsize + self._shards[old][3] * 24
        return m

    def example(self, i: int) -> Tuple[np.ndarray, int]:
        if not 0 <= i < self.num_examples:
            raise IndexError(f"example {i} out of range (0..{self.num_examples - 1})")
        shard = int(self.shard_of(i))
        tokens, idx = self._map(shard)
        start, length, len_a = idx[i - self._starts[shard]]
        return np.array(tokens[start:start + length], dtype=np.int64), int(len_a)

    def token_counts(self, vocab_size: int, max_tokens: Optional[int] = None, chunk: int = 1 << 24):
        """(int64 [vocab_size] count of each token id over the shards, in order, [CLS]/[SEP] included;
        the number of tokens counted), stopping after about `max_tokens` (None: all)."""
        counts, seen = np.zeros(vocab_size, np.int64), 0
        for shard, (_, _, n_tok, _) in enumerate(self._shards):
            tokens, _ = self._map(shard)
            for start in range(0, n_tok, chunk):
                part = np.asarray(tokens[start:start + chunk])
                if part.size and int(part.max()) >= vocab_size:
                    raise DataError(f"{self.path}: token id {int(part.max())} in shard {shard} is outside a "
                                    f"vocab of {vocab_size}")
                counts += np.bincount(part, minlength=vocab_size)
                seen += part.size
                if max_tokens is not None and seen >= max_tokens:
                    return counts, seen
        return counts, seen

    def batch(self, indices: Sequence[int]):
        """input_ids, attention_mask, token_type_ids: int64 [len(indices), max_seq_length]."""
        L = self.max_seq_length
        indices = np.asarray(indices, dtype=np.int64)
        ids = np.zeros((len(indices), L), np.int64)
        mask = np.zeros((len(indices), L), np.int64)
        seg = np.zeros((len(indices), L), np.int64)
        for r in np.argsort(self.shard_of(indices), kind="stable"):  # shard by shard
            x, len_a = self.example(int(indices[r]))
            n = min(len(x), L)
            ids[r, :n], mask[r, :n], seg[r, len_a:n] = x[:n], 1, 1
        return ids, mask, seg


class ExampleOrder:
    """Which examples each rank reads at each step, a pure function of (seed, step), so resuming
    needs only the step.

    The examples are cut into `ranges` contiguous ranges (by default one per process); each range
    is read in a fresh seeded permutation per epoch of its own. The global batch of step s,
    B = world * per_rank, takes B / ranges examples from each range, and rank r takes its r-th
    slice of it: with ranges = world, rank r reads only range r (its shards, never the whole
    corpus). The order depends on `ranges`, not on the number of processes, so a 1-process run
    with ranges=2 and the doubled batch reads exactly the examples of a 2-process run. ranges=1 is
    one permutation of the whole corpus (the order before ranges existed)."""

    def __init__(self, num_examples: int, seed: int, ranges: int = 1):
        if num_examples <= 0:
            raise DataError("the data holds no examples")
        if not 1 <= ranges <= num_examples:
            raise DataError(f"{ranges} example ranges for {num_examples} examples: need 1..{num_examples}")
        self.n, self.seed, self.ranges = num_examples, seed, ranges
        self.bounds = [j * num_examples // ranges for j in range(ranges + 1)]
        self._perms: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()

    def _permutation(self, j: int, epoch: int) -> np.ndarray:
        key = (j, epoch)
        if key not in self._perms:
            n = self.bounds[j + 1] - self.bounds[j]
            seed = [self.seed, epoch] if self.ranges == 1 else [self.seed, epoch, j]
            self._perms[key] = np.random.default_rng(seed).permutation(n)
            if len(self._perms) > 2 * self.ranges:
                self._perms.popitem(last=False)
        return self._perms[key]

    def _check(self, per_rank, world):
        if (per_rank * world) % self.ranges:
            raise DataError(f"the global batch {per_rank} x {world} processes does not split into {self.ranges} "
                            f"example ranges: give a batch or --data-ranges that divides it")

    def rank_range(self, per_rank: int, rank: int = 0, world: int = 1) -> Tuple[int, int]:
        """The examples lo..hi-1 that `rank` reads at every step."""
        self._check(per_rank, world)
        part = per_rank * world // self.ranges
        q = np.array([rank * per_rank, rank * per_rank + per_rank - 1])
        return self.bounds[int(q[0] // part)], self.bounds[int(q[1] // part) + 1]

    def indices(self, step: int, per_rank: int, rank: int = 0, world: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """(example indices, their global positions in the stream) for this rank at `step`."""
        self._check(per_rank, world)
        B = per_rank * world
        part = B // self.ranges
        q = np.arange(rank * per_rank, rank * per_rank + per_rank, dtype=np.int64)
        j, t = q // part, step * part + q % part
        out = np.empty(per_rank, np.int64)
        for jj in np.unique(j):
            lo, n = self.bounds[jj], self.bounds[jj + 1] - self.bounds[jj]
            for epoch in np.unique(t[j == jj] // n):
                sel = (j == jj) & (t // n == epoch)
                out[sel] = lo + self._permutation(int(jj), int(epoch))[t[sel] % n]
        return out, step * B + q


# --- command line (pretrain/build_pretraining_dataset.py) -----------------------------------------------
def add_build_arguments(p):
    from ..tokenizer import bundled_vocab_path
    p.add_argument("--input", nargs="+", default=[], metavar="FILE",
                   help="text files: one sentence or paragraph a line, a blank line between documents")
    p.add_argument("--input-docs-per-line", nargs="+", default=[], metavar="FILE",
                   help="text files with one whole document a line (e.g. CLUECorpusSmall): each line is split "
                        "into sentences at 。！？!?；; and ends its document")
    p.add_argument("--task-texts", nargs="+", default=[], metavar="TASK=FILE",
                   help="fine-tuning training files whose unlabeled text to add (task-adaptive pretraining), "
                        "e.g. chnsenticorp=train.tsv msra_ner=train.txt xnli=train.10k.json cmrc2018=trial.json")
    p.add_argument("--exclude-texts-of", nargs="+", default=[], metavar="TASK=FILE",
                   help="evaluation files (dev, test): an --input line or --task-texts example holding one of their texts is left out")
    p.add_argument("--vocab", default=bundled_vocab_path(), help="vocab.txt (default: the bundled Chinese vocab)")
    p.add_argument("--output-dir", required=True,
                   help="folder to write; a non-empty one only when it holds a previous dataset (or --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --output-dir that is not a previous dataset (never an input)")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--num-processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--hfl-segment-bug", action="store_true",
                   help="the first-segment rule of HFL's Chinese ELECTRA data (before google-research/electra "
                        "commit 1ed0852): most examples end up with one segment")
    p.add_argument("--unit-mb", type=float, help="text per work unit / shard in MB (default: automatic, <= 32)")


def run_build(args) -> int:
    opts = BuildOptions(output_dir=args.output_dir, vocab_file=args.vocab, max_seq_length=args.max_seq_length,
                        seed=args.seed, hfl_segment_bug=args.hfl_segment_bug)
    if not args.input and not args.input_docs_per_line and not args.task_texts:
        raise ValueError("give --input, --input-docs-per-line and/or --task-texts")
    with tempfile.TemporaryDirectory() as tmp:
        inputs, docs_per_line = list(args.input), list(args.input_docs_per_line)
        banned = EvaluationTexts(args.exclude_texts_of)
        if args.exclude_texts_of:
            for files in (inputs, docs_per_line):
                for i, path in enumerate(files):
                    files[i] = os.path.join(tmp, f"{len(os.listdir(tmp))}_{os.path.basename(path)}")
                    n = drop_evaluation_lines(path, files[i], banned)
                    print(f"{path}: {n} lines hold a text of --exclude-texts-of, left out")
        if args.task_texts:
            inputs.append(os.path.join(tmp, "task_texts.txt"))
            c = write_task_texts(args.task_texts, banned, inputs[-1])
            print(f"task texts: {c['written']} of {c['examples']} examples ({c['excluded']} hold a text of "
                  f"--exclude-texts-of, {c['repeated']} repeat one)")
        specs = args.task_texts + args.exclude_texts_of
        users = args.input + args.input_docs_per_line + [spec.partition("=")[2] for spec in specs]
        sources = {"inputs": [os.path.abspath(p) for p in args.input],
                   "docs_per_line_inputs": [os.path.abspath(p) for p in args.input_docs_per_line],
                   "task_texts": [_absolute_spec(x) for x in args.task_texts],
                   "exclude_texts_of": [_absolute_spec(x) for x in args.exclude_texts_of]}
        index = build_dataset(inputs, opts, num_processes=args.num_processes,
                              unit_bytes=int(args.unit_mb * (1 << 20)) if args.unit_mb else None,
                              docs_per_line=docs_per_line, overwrite=args.overwrite,
                              sources=sources if specs else None, protect=users)
    s = index["summary"]
    print(f"wrote {args.output_dir}: {len(index['shards'])} shards, {s['documents']} documents, {s['lines']} lines, "
          f"{s['examples']} examples, {s['tokens']} tokens, padding {100 * s['padding_share']:.1f}%, "
          f"two segments {100 * s['two_segment_share']:.1f}%, {s['seconds']} s")
    if s.get("long_lines"):
        print(f"{s['long_lines']} lines longer than an example ({opts.max_seq_length - 2} tokens) were cut into "
              f"{s['long_line_pieces']} pieces, one example each")
    return 0

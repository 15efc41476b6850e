"""Building pretraining examples (`paddle-electra build-data`): raw text -> the sharded folder that
pretraining.train_data reads (its format is described there).

Input text: one sentence (or paragraph) a line, a blank line between documents, as the original's
build_pretraining_dataset.py (or one whole document a line, split into sentences). The input is cut
into work units of whole lines, each built by one process into one shard with the original's
example builder (pretraining.example_builder); task-adaptive text can be added from fine-tuning
training files, and the texts of evaluation files kept out.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ..io import DataError  # one class for every data error
from ..io import OutputKind, output_dir
from .example_builder import ExampleBuilder
from .train_data import FORMAT, INDEX_NAME, file_md5, shard_name

# a previous build (what build_dataset writes), which a new build replaces without --overwrite
DATASET_DIR = OutputKind("pretraining dataset", (INDEX_NAME,), (INDEX_NAME, "shard-*.bin", "shard-*.idx"))


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

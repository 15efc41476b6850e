"""`paddle-electra predict MODEL_DIR --input FILE|-`: a fine-tuned model over a file, through
paddle_electra.pipeline.

Input: one text per line, or one JSON object per line ({"text": ..., "text_pair": ...} or
{"context": ..., "question": ...}); blank lines are skipped. Output: one JSON line per input line,
{"line": N, ...the pipeline's result} ({"line": N, "entities": [...]} for token-cls), to stdout or
to --output (written beside and renamed in when complete). Every line is checked before the model
runs: an error names the file, the line and the field.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import Iterable, List, Optional, Tuple

CHUNK = 256  # inputs per pipeline call (the progress bar's step)


def add_arguments(p):
    from .inference import ENGINES, PRECISIONS
    from .pipeline import TASKS
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a fine-tuned model folder (or registered name)")
    p.add_argument("--input", required=True, metavar="FILE|-",
                   help="one text per line, or a JSON object per line ({\"text\", \"text_pair\"} / "
                        "{\"context\", \"question\"}); - reads stdin")
    p.add_argument("--task", default=None, choices=TASKS,
                   help="default: the task the folder was fine-tuned for (its config.json)")
    p.add_argument("--output", default=None, metavar="FILE", help="JSON lines (default: stdout)")
    p.add_argument("--engine", default="auto", choices=ENGINES)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-length", type=int, default=None, help="default: min(512, the model's)")
    p.add_argument("--device", default=None, help="cpu, gpu, gpu:1 (default: the GPU when there is one)")
    p.add_argument("--num-threads", type=int, default=None)


def read_inputs(lines: Iterable[str], source: str, keys: Tuple[str, ...]) -> List[Tuple[int, object]]:
    """(line number, input) of each non-blank line: a JSON object (a line starting with "{") or the
    line's text; errors name `source` and the line."""
    out = []
    for n, line in enumerate(lines, 1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if text.lstrip().startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{source}: line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{source}: line {n}: expected a JSON object with {' / '.join(keys)}")
            out.append((n, obj))
        else:
            out.append((n, text))
    if not out:
        raise ValueError(f"{source}: no input (every line is blank)")
    return out


def write_atomic(path: str, lines: Iterable[str]) -> None:
    """Write `lines` to `path` through a file beside it, renamed in when complete (never half written)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ValueError(f"--output {path} is a folder; give a file name")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def stdout_to_stderr():
    """While the model loads and runs, whatever writes to stdout (paddle2onnx's C++ prints, on first use
    of the ONNX engine) goes to stderr: stdout holds the JSON lines only."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): Python writes only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(fd)
    try:
        os.dup2(sys.stderr.fileno(), fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, fd)
        os.close(saved)


def record(line: int, result) -> dict:
    return {"line": line, **(result if isinstance(result, dict) else {"entities": result})}


def run(args) -> int:
    source = "stdin" if args.input == "-" else args.input
    if args.output and args.input != "-" and os.path.exists(args.output) and \
            os.path.realpath(args.output) == os.path.realpath(args.input):
        raise ValueError(f"--output {args.output} is the input file; choose another name")
    if args.input == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            with open(args.input, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise FileNotFoundError(f"--input {args.input} does not exist") from None
        except UnicodeDecodeError as e:
            raise ValueError(f"{args.input}: not UTF-8 text (byte {e.start})") from None
    with stdout_to_stderr():
        results, task = _predict(args, lines, source)
    out = (json.dumps(record(n, r), ensure_ascii=False) + "\n" for n, r in results)
    if args.output:
        write_atomic(args.output, out)
        print(f"wrote {len(results)} predictions ({task}) to {args.output}", file=sys.stderr)
    else:
        for line in out:
            sys.stdout.write(line)
        sys.stdout.flush()
    return 0


def _predict(args, lines: List[str], source: str):
    """[(line number, result)] of the input lines, and the task."""
    from tqdm import tqdm
    from .pipeline import input_keys, pipeline
    pipe = pipeline(args.task, args.model_dir, engine=args.engine, precision=args.precision,
                    batch_size=args.batch_size, max_seq_length=args.max_seq_length, device=args.device,
                    num_threads=args.num_threads)
    items = read_inputs(lines, source, input_keys(pipe.task))
    # check every line before the model runs (the pipeline's own checks, per line)
    from .pipeline import as_texts
    from .tasks import check_data
    for n, item in items:
        try:
            check_data([as_texts(item, pipe.task, "input")], pipe.task)
        except (TypeError, ValueError) as e:
            msg = str(e).replace("input: ", "").replace("data[0]", "text")
            raise ValueError(f"{source}: line {n}: {msg}") from None
    results = []
    with tqdm(total=len(items), desc=f"predict ({pipe.task})", unit="line", file=sys.stderr,
              disable=None) as bar:
        for i in range(0, len(items), CHUNK):
            chunk = items[i:i + CHUNK]
            results.extend(pipe.predict([x for _, x in chunk]))
            bar.update(len(chunk))
    return [(n, r) for (n, _), r in zip(items, results)], pipe.task

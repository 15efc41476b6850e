"""What `engine="auto"` gives a user of the `hub` install, against `engine="paddle"` (Paddle Inference),
with and without the optional packages of the ONNX Runtime fusion (sympy; torch is never in that install):

  auto          ElectraPredictor.from_pretrained(d, engine="auto") with everything installed here
  auto-unfused  the same on a second model of the same shape, built with sympy and torch unimportable, so
                the fusion fails and auto chooses among the engines that load without it
  paddle        ElectraPredictor.from_pretrained(d, engine="paddle")

Each arm's choice and recorded reason, then seq/s on --batch-size x --seq-len batches and batch-1 latency
of a --short-len sentence (--latency-rounds in a row), the arms taking turns each round (median over
rounds; a busy machine slows all of them alike), and the ratios to paddle.

    python benchmarks/auto_engine.py                      # ELECTRA-small shape, random weights, seq-cls
    python benchmarks/auto_engine.py --model chinese-electra-base

Run it in the install under test (the demo's venv: `make demo` makes .venv-demo with the hub extra alone).
Appends a JSON line to --output.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FUSION_PACKAGES = ("sympy", "torch")
SETTLE = 0.5  # seconds between arms: ONNX Runtime's threads spin after a run and would slow the next arm


def _optional(name: str) -> bool:
    """ONNX Runtime's submodules that import the optional packages (some import under top-level names)."""
    where = getattr(sys.modules[name], "__file__", None) or ""
    return any(f"{os.sep}onnxruntime{os.sep}{sub}{os.sep}" in where for sub in ("transformers", "quantization", "tools"))


class _Without:
    """Makes `import name` fail for the given packages (and re-imports ONNX Runtime's optional submodules,
    which import them), restoring the import state on exit."""

    def __init__(self, names):
        self.names, self.saved = names, {}

    def __enter__(self):
        for name in [n for n in sys.modules if n in self.names or _optional(n)]:
            self.saved[name] = sys.modules.pop(name)
        for name in self.names:
            sys.modules[name] = None

    def __exit__(self, *exc):
        for name in self.names:
            sys.modules.pop(name, None)
        for name in [n for n in sys.modules if _optional(n)]:
            del sys.modules[name]  # imported while the packages were missing: import them again
        sys.modules.update(self.saved)


def _model(where: str, variant: str, seed: int) -> str:
    import paddle
    from paddle_electra.config import get_variant
    from paddle_electra.heads import ElectraForSequenceClassification
    paddle.seed(seed)  # another seed, other weights: each arm exports and measures its own graph
    return ElectraForSequenceClassification(get_variant(variant).discriminator, num_labels=2).save_pretrained(where)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="chinese-electra-small", help="registered variant whose shape to use")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--short-len", type=int, default=32, help="tokens of the batch-1 sentence")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--latency-rounds", type=int, default=10, help="batch-1 runs per arm and round")
    p.add_argument("--output", default="runs/bench/auto_engine.jsonl", help="JSON lines appended here")
    args = p.parse_args(argv)

    from paddle_electra import runtime
    runtime.quiet_third_party()
    from paddle_electra.cpu import machine_record
    from paddle_electra.inference import ElectraPredictor

    home = tempfile.mkdtemp(prefix="auto-engine-")
    os.environ["PADDLE_ELECTRA_HOME"] = home  # the caches of this run only
    arms = {}
    with _Without(FUSION_PACKAGES):
        arms["auto-unfused"] = ElectraPredictor.from_pretrained(
            _model(os.path.join(home, "unfused"), args.model, 1), task="seq-cls", engine="auto")
    d = _model(os.path.join(home, "m"), args.model, 2)
    arms["auto"] = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="auto")
    arms["paddle"] = ElectraPredictor.from_pretrained(d, task="seq-cls", engine="paddle")

    rng = np.random.default_rng(0)

    def batch(n, length):
        ids = rng.integers(100, 20000, size=(n, length)).astype("int64")
        ids[:, 0], ids[:, -1] = 101, 102
        return ids, np.zeros_like(ids), np.ones_like(ids)

    big, one = batch(args.batch_size, args.seq_len), batch(1, args.short_len)
    for pred in arms.values():  # warm-up: first-run allocations and oneDNN primitive caches
        pred(*big), pred(*one)
    seconds = {name: [] for name in arms}
    latency = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, pred in arms.items():
            time.sleep(SETTLE)
            t = time.perf_counter()
            pred(*big)
            seconds[name].append(time.perf_counter() - t)
            time.sleep(SETTLE)
            for _ in range(args.latency_rounds):
                t = time.perf_counter()
                pred(*one)
                latency[name].append(time.perf_counter() - t)
    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_record(),
              "model": args.model, "batch": [args.batch_size, args.seq_len], "short_len": args.short_len,
              "threads": runtime.default_num_threads(), "arms": {}}
    paddle_rate = args.batch_size / statistics.median(seconds["paddle"])
    paddle_ms = 1000 * statistics.median(latency["paddle"])
    print(f"{record['machine']['cpu']} ({record['machine']['isa']}), {record['threads']} threads, load "
          f"{record['machine']['load_average'][0]:.2f}; {args.model}, {args.batch_size} x {args.seq_len}, "
          f"batch 1 x {args.short_len}")
    for name, pred in arms.items():
        rate = args.batch_size / statistics.median(seconds[name])
        ms = 1000 * statistics.median(latency[name])
        record["arms"][name] = {"engine": pred.engine, "reason": pred.engine_reason,
                                "graph": os.path.basename(pred.graph or ""), "seq_per_s": rate,
                                "batch1_ms": ms, "vs_paddle": rate / paddle_rate,
                                "batch1_vs_paddle": ms / paddle_ms}
        print(f"{name:13s} {pred.engine:12s} {rate:7.1f} seq/s ({rate / paddle_rate:.2f}x paddle)  "
              f"batch-1 {ms:6.2f} ms ({ms / paddle_ms:.2f}x)  reason: {pred.engine_reason}")
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

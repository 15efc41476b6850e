"""Accuracy of a fine-tuned sentence classifier run by ElectraPredictor in fp32 and in bf16 or int8
(ChnSentiCorp dev by default), the largest logit difference, and how many predictions flip.

    python benchmarks/bf16_accuracy.py --model-dir <fine-tuned chnsenticorp dir> \
        [--dev-file ../shared/data/chnsenticorp/dev.tsv] [--with-dygraph]
    python benchmarks/bf16_accuracy.py --model-dir <...> --precision int8     # ONNX Runtime dynamic int8

fp32 is Paddle Inference's (equal to dygraph); bf16 runs on Paddle Inference (native-bf16 CPUs only),
int8 on --engine (default onnxruntime).

The dev set is read and featurized by the fine-tuning task (paddle_electra.finetuning.tasks), as
the fine-tuning evaluation does. Appends a JSON line to --output.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from paddle_electra import inference, runtime  # noqa: E402


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, help="a fine-tuned ElectraForSequenceClassification dir")
    p.add_argument("--task", default="chnsenticorp", help="fine-tuning task that reads the file")
    p.add_argument("--dev-file", default=os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "chnsenticorp",
                                                                        "dev.tsv")))
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--with-dygraph", action="store_true", help="also score the dygraph model (fp32 reference)")
    p.add_argument("--precision", choices=("bf16", "int8"), default="bf16", help="what is compared with fp32")
    p.add_argument("--engine", default=None,
                   help="engine of --precision (default: paddle for bf16, onnxruntime for int8)")
    p.add_argument("--output", default="runs/bench/bf16_accuracy.jsonl", help="JSON lines appended here")
    args = p.parse_args(argv)

    from paddle_electra.finetuning.config import FinetuneConfig
    from paddle_electra.finetuning.tasks import get_task
    from paddle_electra.tokenizer import ElectraTokenizer

    runtime.configure_process("cpu", args.num_threads)
    low = args.precision
    engine = args.engine or ("paddle" if low == "bf16" else "onnxruntime")
    if low == "bf16" and not inference.cpu_supports_bf16():
        sys.exit("this CPU has no native bf16 (AVX512-BF16 / AMX-BF16): nothing to compare")
    inference.choose_engine(engine, low, "cpu")  # a missing package or a refused combination: before the reading
    if not os.path.exists(args.dev_file):
        sys.exit(f"dev file not found: {args.dev_file}")
    task = get_task(args.task, FinetuneConfig(task_names=[args.task], max_seq_length=args.max_seq_length),
                    ElectraTokenizer.from_pretrained(args.model_dir))
    model_labels = inference.model_config(args.model_dir, "seq-cls").extra.get("id2label")
    if model_labels is not None:
        names = [model_labels[str(i)] for i in range(len(model_labels))] if isinstance(model_labels, dict) \
            else list(model_labels)
        if names != list(task.labels):
            sys.exit(f"{args.model_dir}: labels {names} are not task {args.task}'s {list(task.labels)}")
    feats = task.featurize(task.read_file(args.dev_file, "dev"), False)
    ids = [f.input_ids for f in feats]
    types = [f.token_type_ids for f in feats]
    labels = np.asarray([f.label for f in feats])
    print(f"{len(feats)} examples from {args.dev_file}, max_seq_length {args.max_seq_length}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    logits, secs = {}, {}
    for prec in ("fp32", low):
        pred = inference.ElectraPredictor.from_pretrained(args.model_dir, task="seq-cls", precision=prec,
                                                          num_threads=args.num_threads, device="cpu",
                                                          engine="paddle" if prec == "fp32" else engine)
        t = time.perf_counter()
        logits[prec] = np.stack(pred.predict_batches(ids, types, batch_size=args.batch_size))
        secs[prec] = time.perf_counter() - t
        print(f"  {prec} ({pred.engine}): accuracy {100 * accuracy(logits[prec], labels):.2f}  "
              f"({len(feats) / secs[prec]:.0f} seq/s)", flush=True)
    if args.with_dygraph:
        import paddle
        model = inference.load_dygraph(args.model_dir, "seq-cls")
        out = []
        with paddle.no_grad():
            for s in range(0, len(ids), args.batch_size):
                for i in range(s, min(s + args.batch_size, len(ids))):  # one at a time: no padding at all
                    out.append(model(paddle.to_tensor([ids[i]]), paddle.to_tensor([types[i]])).numpy()[0])
        logits["dygraph"] = np.stack(out)
        print(f"  dygraph: accuracy {100 * accuracy(logits['dygraph'], labels):.2f}", flush=True)

    acc = {k: accuracy(v, labels) for k, v in logits.items()}
    diff = np.abs(logits[low] - logits["fp32"])
    flips = int((logits[low].argmax(-1) != logits["fp32"].argmax(-1)).sum())
    # how close the closest fp32 decision is: top logit minus the runner-up
    top2 = np.sort(logits["fp32"], axis=-1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0]).min()) if logits["fp32"].shape[1] > 1 else float("nan")
    delta = 100 * (acc[low] - acc["fp32"])
    record = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "model_dir": os.path.abspath(args.model_dir),
              "dev_file": os.path.abspath(args.dev_file), "examples": len(feats),
              "precision": low, "engine": engine, "accuracy": acc, f"{low}_minus_fp32_points": delta, "max_abs_logit_diff": float(diff.max()),
              "mean_abs_logit_diff": float(diff.mean()), "flipped_predictions": flips,
              "smallest_fp32_margin": margin,
              "seq_per_s": {k: len(feats) / v for k, v in secs.items()}}
    if "dygraph" in logits:
        record["max_abs_logit_diff_fp32_vs_dygraph"] = float(np.abs(logits["fp32"] - logits["dygraph"]).max())
    print(f"\naccuracy fp32 {100 * acc['fp32']:.2f}, {low} ({engine}) {100 * acc[low]:.2f} ({delta:+.2f} points; "
          f"{'within' if abs(delta) <= 0.5 else 'OUTSIDE'} 0.5); max |logit diff| {diff.max():.4f}, "
          f"mean {diff.mean():.4f}; {flips} of {len(feats)} predictions flip (smallest fp32 margin between "
          f"the top two logits: {margin:.4f})")
    if "max_abs_logit_diff_fp32_vs_dygraph" in record:
        print(f"fp32 predictor vs dygraph: max |logit diff| {record['max_abs_logit_diff_fp32_vs_dygraph']:.2e}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()

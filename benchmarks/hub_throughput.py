"""The PaddleHub module's cost over the bare predictor: the same texts through

  1. `ElectraPredictor.predict_texts` (the fast path alone: tokenize, bucket, run),
  2. `hub.Module(name=..., task=..., load_checkpoint=DIR).predict(...)` in this process,
  3. `hub serving` (python -m paddle_electra.hub serving start -c CONFIG) on 127.0.0.1, the texts POSTed
     in requests of --batch-size texts, one request at a time,
  4. the predictor again, called once per request-sized chunk: what the server can do at best, since
     it sees one request's texts at a time and cannot sort all of them by length as 1. and 2. do,

seq/s of each (median over rounds, taken in turn) and the ratios module / predictor, serving /
predictor and serving / predictor per request (target: >= 0.8).

    python benchmarks/hub_throughput.py                       # ELECTRA-small seq-cls, random weights
    python benchmarks/hub_throughput.py --task None           # the embeddings service
    python benchmarks/hub_throughput.py --model-dir DIR       # a fine-tuned ElectraForSequenceClassification

Texts: ChnSentiCorp dev (../shared/data, else the bundled sample), the first --texts of them. The
module is installed (and the random weights written) in temporary homes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from serving_load import free_port, setup_random, start_server, stop_server  # noqa: E402


def read_texts(n):
    from paddle_electra.finetuning.config import FinetuneConfig
    from paddle_electra.finetuning.tasks import get_task
    from paddle_electra.tokenizer import ElectraTokenizer
    for path in (os.path.join(ROOT, "..", "shared", "data", "chnsenticorp", "dev.tsv"),
                 os.path.join(ROOT, "demo_data", "chnsenticorp", "dev.tsv")):
        if os.path.exists(path):
            task = get_task("chnsenticorp", FinetuneConfig(task_names=["chnsenticorp"]), ElectraTokenizer())
            return [e.text_a for e in task.read_file(path, "dev")[:n]], path
    raise FileNotFoundError("no ChnSentiCorp dev.tsv in ../shared/data or demo_data")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", default="chinese-electra-small")
    p.add_argument("--task", default="seq-cls", choices=["seq-cls", "None"], help="None: embeddings")
    p.add_argument("--model-dir", help="a fine-tuned seq-cls dir (default: random weights of --module)")
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jsonl", help="append the summary to this JSON-lines file")
    args = p.parse_args(argv)
    task = None if args.task == "None" else args.task
    texts, source = read_texts(args.texts)

    workdir = tempfile.mkdtemp(prefix="hub-throughput-")
    env = dict(os.environ)
    proc = None
    try:
        setup_random(args.module, workdir, env)  # installs the module; the backbone weights for task None
        os.environ.update(PADDLE_ELECTRA_HOME=env["PADDLE_ELECTRA_HOME"], HUB_HOME=env["HUB_HOME"])
        import paddlehub as hub
        from paddle_electra.config import get_variant
        from paddle_electra.heads import ElectraForSequenceClassification
        from paddle_electra.inference import ElectraPredictor
        model_dir = args.model_dir or os.path.join(env["PADDLE_ELECTRA_HOME"], args.module)
        if task == "seq-cls" and not args.model_dir:
            model_dir = os.path.join(workdir, "seq_cls")
            ElectraForSequenceClassification(get_variant(args.module).discriminator, num_labels=2) \
                .save_pretrained(model_dir)

        predictor = ElectraPredictor.from_pretrained(model_dir, task=task)
        init_args = {"task": task, **({"load_checkpoint": model_dir} if task else {})}
        module = hub.Module(name=args.module, **init_args)
        data = [[t] for t in texts]

        port = free_port()
        cfg = os.path.join(workdir, "serving.json")
        with open(cfg, "w", encoding="utf-8") as f:
            json.dump({"modules_info": {args.module: {"init_args": init_args, "predict_args": {
                "max_seq_len": args.max_seq_len, "batch_size": args.batch_size}}}, "port": port}, f)
        proc = start_server(None, port, env, os.path.join(workdir, "server.log"), config=cfg)
        url = f"http://127.0.0.1:{port}/predict/{args.module}"

        def serve():
            for i in range(0, len(data), args.batch_size):
                req = urllib.request.Request(url, json.dumps({"data": data[i:i + args.batch_size]}).encode(),
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=600) as r:
                    body = json.loads(r.read())
                if body.get("status") != "000":
                    raise RuntimeError(f"server answered {body}")

        engines = {
            "predictor": lambda: predictor.predict_texts(texts, max_seq_length=args.max_seq_len,
                                                         batch_size=args.batch_size),
            "hub.Module.predict": lambda: module.predict(data, max_seq_len=args.max_seq_len,
                                                         batch_size=args.batch_size),
            "hub serving": serve,
            "predictor per request": lambda: [predictor.predict_texts(texts[i:i + args.batch_size],
                                                                      max_seq_length=args.max_seq_len,
                                                                      batch_size=args.batch_size)
                                              for i in range(0, len(texts), args.batch_size)],
        }
        for fn in engines.values():  # warm-up: exports, oneDNN primitives for every bucket
            fn()
        rates = {name: [] for name in engines}
        for r in range(args.rounds):
            for name, fn in engines.items():
                t0 = time.perf_counter()
                fn()
                rates[name].append(len(texts) / (time.perf_counter() - t0))
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.1f} seq/s" for n, v in rates.items()), flush=True)
    finally:
        if proc is not None:
            stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)

    med = {n: statistics.median(v) for n, v in rates.items()}
    summary = {"benchmark": "hub_throughput", "module": args.module, "task": args.task,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_average": os.getloadavg(),
               "texts": len(texts), "source": os.path.relpath(source, ROOT), "batch_size": args.batch_size,
               "max_seq_len": args.max_seq_len, "random_weights": not args.model_dir,
               "seq_per_s": med, "per_round": rates,
               "module_over_predictor": med["hub.Module.predict"] / med["predictor"],
               "serving_over_predictor": med["hub serving"] / med["predictor"],
               "serving_over_predictor_per_request": med["hub serving"] / med["predictor per request"]}
    print(f"{args.module} task {args.task}, {len(texts)} texts, batch {args.batch_size}, max_seq_len "
          f"{args.max_seq_len}: " + ", ".join(f"{n} {v:.1f} seq/s" for n, v in med.items())
          + f"; module / predictor {summary['module_over_predictor']:.2f}, serving / predictor "
          f"{summary['serving_over_predictor']:.2f}, serving / predictor per request "
          f"{summary['serving_over_predictor_per_request']:.2f}")
    if args.jsonl:
        with open(args.jsonl, "a", encoding="utf-8") as f:
            f.write(json.dumps(summary, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

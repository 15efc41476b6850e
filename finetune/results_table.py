"""The fine-tuning tables of docs/results.md: every model of --model fine-tuned on a protocol's tasks
(same shape, same recipe, --trials seeds each), one `paddle-electra finetune` per (model, task), --jobs
at a time on one thread each; then the table of max / mean (values) over the trials.

    python finetune/results_table.py --model random=runs/long/random_init --model pretrained=runs/long/export \
        --data-dir ../shared/data --out runs/long/results --protocol low --pooling mean --jobs 2

Protocols (PROTOCOLS below; /work/shared/data/README.md for why XNLI trains on OCNLI and CMRC 2018 on
its trial set):
- `full`: ChnSentiCorp full train -> dev; MSRA NER, 5,000 train sentences (a seeded sample, the same in
  every run) -> dev; XNLI: OCNLI train.10k -> XNLI dev; CMRC 2018: trial -> 1,000 dev questions (a
  seeded sample).
- `low` (low-resource, where a small pretraining budget shows best): 1,000 ChnSentiCorp train
  examples and 1,000 MSRA NER train sentences (seeded samples), full dev sets, more epochs.
The recipe is finetune/params_<task>.json with the overrides given here (sized to a 2-core CPU), the
same for every model. `--pooling mean` gives the sentence tasks' head the mean of the tokens' states
instead of [CLS] (hparam `classifier_pooling`), for every model alike. Runs go to
OUT/<protocol>[-mean]/<model>/; `--table-only` prints the table from finished runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# protocol -> task -> (train file, dev file, hparams overrides, [(metric key of <task>_results.json, column)])
PROTOCOLS = {
    "full": {
        "chnsenticorp": ("chnsenticorp/train.tsv", "chnsenticorp/dev.tsv",
                         {"max_seq_length": 128, "num_train_epochs": 1}, [("dev_accuracy", "ChnSentiCorp acc.")]),
        "msra_ner": ("msra_ner/train.txt", "msra_ner/dev.txt",
                     {"max_seq_length": 128, "num_train_epochs": 2, "max_train_examples": 5000},
                     [("dev_f1", "MSRA NER F1")]),
        "xnli": ("ocnli/train.10k.json", "xnli/dev.tsv",
                 {"max_seq_length": 128, "num_train_epochs": 1}, [("dev_accuracy", "XNLI acc.")]),
        "cmrc2018": ("cmrc2018/trial.json", "cmrc2018/dev.json",
                     {"max_seq_length": 256, "doc_stride": 128, "num_train_epochs": 2, "write_test_outputs": False,
                      "max_eval_examples": 1000},
                     [("dev_em", "CMRC 2018 EM"), ("dev_f1", "CMRC 2018 F1")]),
    },
    "low": {
        "chnsenticorp": ("chnsenticorp/train.tsv", "chnsenticorp/dev.tsv",
                         {"max_seq_length": 128, "num_train_epochs": 20, "max_train_examples": 1000},
                         [("dev_accuracy", "ChnSentiCorp acc. (1,000)")]),
        "msra_ner": ("msra_ner/train.txt", "msra_ner/dev.txt",
                     {"max_seq_length": 128, "num_train_epochs": 20, "max_train_examples": 1000},
                     [("dev_f1", "MSRA NER F1 (1,000)")]),
    },
}
SENTENCE_TASKS = ("chnsenticorp", "xnli")


def hparams(protocol: str, task: str, data_dir: str, results_dir: str, trials: int, pooling: str = "cls") -> dict:
    train, dev, overrides, _ = PROTOCOLS[protocol][task]
    with open(os.path.join(HERE, f"params_{task}.json"), encoding="utf-8") as f:
        hp = json.load(f)
    hp.update(overrides, train_file=os.path.join(data_dir, train), dev_file=os.path.join(data_dir, dev),
              do_test=False, save_model=False, num_trials=trials, num_threads=1, results_dir=results_dir)
    if task in SENTENCE_TASKS:
        hp["classifier_pooling"] = pooling
    return hp


def run_dir(out: str, protocol: str, pooling: str, model: str) -> str:
    return os.path.join(out, protocol + ("-mean" if pooling == "mean" else ""), model)


def results_path(work: str, task: str) -> str:
    return os.path.join(work, "results", f"{task}_results.json")


def run_all(models: dict, protocol: str, pooling: str, tasks, data_dir: str, out: str, trials: int, jobs: int):
    queue = [(m, t) for t in tasks for m in models
             if not os.path.exists(results_path(run_dir(out, protocol, pooling, m), t))]
    running = []
    while queue or running:
        while queue and len(running) < jobs:
            m, t = queue.pop(0)
            work = run_dir(out, protocol, pooling, m)
            os.makedirs(work, exist_ok=True)
            hp = hparams(protocol, t, data_dir, os.path.join(work, "results"), trials, pooling)
            cmd = [os.path.join(os.path.dirname(sys.executable), "paddle-electra"), "finetune", "--data-dir", work,
                   "--model-name", models[m], "--hparams", json.dumps(hp)]
            log = open(os.path.join(work, f"{t}.log"), "w")
            print(f"[{time.strftime('%H:%M:%S')}] start {m} / {t}: log {log.name}", flush=True)
            running.append((m, t, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, time.time()))
        time.sleep(5)
        for job in list(running):
            m, t, proc, log, t0 = job
            if proc.poll() is not None:
                log.close()
                running.remove(job)
                state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}; see {log.name})"
                print(f"[{time.strftime('%H:%M:%S')}] {state} {m} / {t} in {(time.time() - t0) / 60:.1f} min", flush=True)


def table(models, protocol: str, pooling: str, tasks, out: str) -> str:
    cols = [(t, key, name) for t in tasks for key, name in PROTOCOLS[protocol][t][3]]
    lines = ["| model | " + " | ".join(n for _, _, n in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in models:
        cells = []
        for t, key, _ in cols:
            try:
                with open(results_path(run_dir(out, protocol, pooling, m), t), encoding="utf-8") as f:
                    s = json.load(f)["summary"][key]
                cells.append(f"{s['max']:.1f} / {s['mean']:.1f} ({', '.join(f'{v:.1f}' for v in s['values'])})")
            except (OSError, KeyError):
                cells.append("-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="a model to fine-tune (repeat)")
    p.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    p.add_argument("--out", required=True, help="folder of the runs (a finished (model, task) is not run again)")
    p.add_argument("--protocol", choices=list(PROTOCOLS), default="full")
    p.add_argument("--pooling", choices=("cls", "mean"), default="cls", help="the sentence tasks' head")
    p.add_argument("--tasks", nargs="+", default=None, help="a subset of the protocol's tasks")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="fine-tunings at a time (one thread each)")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args(argv)
    tasks = a.tasks or list(PROTOCOLS[a.protocol])
    unknown = [t for t in tasks if t not in PROTOCOLS[a.protocol]]
    if unknown:
        p.error(f"protocol {a.protocol} has no task {', '.join(unknown)} (it has {', '.join(PROTOCOLS[a.protocol])})")
    models = dict(m.split("=", 1) for m in a.model)
    if not a.table_only:
        run_all(models, a.protocol, a.pooling, tasks, os.path.abspath(a.data_dir), os.path.abspath(a.out),
                a.trials, a.jobs)
    print(table(models, a.protocol, a.pooling, tasks, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

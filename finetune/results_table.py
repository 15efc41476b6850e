"""The fine-tuning table of docs/results.md: every model of --model fine-tuned on the protocol's tasks
(same shape, same recipe, --trials seeds each), one `paddle-electra finetune` per (model, task), --jobs
at a time on one thread each; then the table of max / mean (values) over the trials.

    python finetune/results_table.py --model random=runs/long/random_init --model pretrained=runs/long/export \
        --data-dir ../shared/data --out runs/long/results --jobs 2

The protocol (PROTOCOL below; /work/shared/data/README.md for why XNLI trains on OCNLI and CMRC 2018 on
its trial set): ChnSentiCorp full train -> dev; MSRA NER, 5,000 train sentences (a seeded sample, the
same in every run) -> dev; XNLI: OCNLI train.10k -> XNLI dev; CMRC 2018: trial -> 1,000 dev questions
(a seeded sample). The recipe is
finetune/params_<task>.json with the overrides given here (sized to a 2-core CPU). `--table-only`
prints the table from finished runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# task -> (train file, dev file, hparams overrides, [(metric key of <task>_results.json, column name)])
PROTOCOL = {
    "chnsenticorp": ("chnsenticorp/train.tsv", "chnsenticorp/dev.tsv",
                     {"max_seq_length": 128, "num_train_epochs": 1}, [("dev_accuracy", "ChnSentiCorp acc.")]),
    "msra_ner": ("msra_ner/train.txt", "msra_ner/dev.txt",
                 {"max_seq_length": 128, "num_train_epochs": 2, "max_train_examples": 5000}, [("dev_f1", "MSRA NER F1")]),
    "xnli": ("ocnli/train.10k.json", "xnli/dev.tsv",
             {"max_seq_length": 128, "num_train_epochs": 1}, [("dev_accuracy", "XNLI acc.")]),
    "cmrc2018": ("cmrc2018/trial.json", "cmrc2018/dev.json",
                 {"max_seq_length": 256, "doc_stride": 128, "num_train_epochs": 2, "write_test_outputs": False,
                  "max_eval_examples": 1000},
                 [("dev_em", "CMRC 2018 EM"), ("dev_f1", "CMRC 2018 F1")]),
}


def hparams(task: str, data_dir: str, results_dir: str, trials: int) -> dict:
    train, dev, overrides, _ = PROTOCOL[task]
    with open(os.path.join(HERE, f"params_{task}.json"), encoding="utf-8") as f:
        hp = json.load(f)
    hp.update(overrides, train_file=os.path.join(data_dir, train), dev_file=os.path.join(data_dir, dev),
              do_test=False, save_model=False, num_trials=trials, num_threads=1, results_dir=results_dir)
    return hp


def results_path(out: str, model: str, task: str) -> str:
    return os.path.join(out, model, "results", f"{task}_results.json")


def run_all(models: dict, tasks, data_dir: str, out: str, trials: int, jobs: int):
    queue = [(m, t) for t in tasks for m in models if not os.path.exists(results_path(out, m, t))]
    running = []
    while queue or running:
        while queue and len(running) < jobs:
            m, t = queue.pop(0)
            work = os.path.join(out, m)
            os.makedirs(work, exist_ok=True)
            cmd = [os.path.join(os.path.dirname(sys.executable), "paddle-electra"), "finetune", "--data-dir", work,
                   "--model-name", models[m], "--hparams",
                   json.dumps(hparams(t, data_dir, os.path.join(work, "results"), trials))]
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


def table(models, tasks, out: str) -> str:
    cols = [(t, key, name) for t in tasks for key, name in PROTOCOL[t][3]]
    lines = ["| model | " + " | ".join(n for _, _, n in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in models:
        cells = []
        for t, key, _ in cols:
            try:
                with open(results_path(out, m, t), encoding="utf-8") as f:
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
    p.add_argument("--tasks", nargs="+", default=list(PROTOCOL), choices=list(PROTOCOL))
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="fine-tunings at a time (one thread each)")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args(argv)
    models = dict(m.split("=", 1) for m in a.model)
    if not a.table_only:
        run_all(models, a.tasks, os.path.abspath(a.data_dir), os.path.abspath(a.out), a.trials, a.jobs)
    print(table(models, a.tasks, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

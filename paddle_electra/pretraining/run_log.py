"""What a pretraining run reports besides its checkpoints: the records of metrics.jsonl (training
and held-out), the VisualDL scalars (OUTPUT_DIR/vdl: train/<metric>, eval/<metric>), the tqdm bar
and the lines on stdout, run_info.json and eval_results.json. Only the main process writes; every
process keeps a (disabled) bar."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Dict

from .checkpoint import EVAL_RESULTS_NAME, METRICS_NAME, RUN_INFO_NAME, truncate_metrics


def fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def eval_line(m: Dict) -> str:
    return "eval " + " ".join(f"{k}={fmt(v)}" for k, v in m.items())


def write_eval_results(output_dir: str, m: Dict):
    with open(os.path.join(output_dir, EVAL_RESULTS_NAME), "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1)


class RunLog:
    def __init__(self, output_dir: str, is_main: bool):
        self.output_dir, self.is_main = output_dir, is_main
        self.writer = None
        self.bar = None

    def start(self, step: int, max_steps: int, progress: bool, run_info):
        """A run (or its resumption) at `step`: metrics.jsonl cut back to `step`, run_info.json
        (`run_info()`, called on the main process only) written, VisualDL and the bar opened."""
        from tqdm import tqdm
        os.makedirs(self.output_dir, exist_ok=True)
        if self.is_main:
            truncate_metrics(self.output_dir, step)
            with open(os.path.join(self.output_dir, RUN_INFO_NAME), "w", encoding="utf-8") as f:
                json.dump(run_info(), f, indent=1, default=str)
            try:
                from visualdl import LogWriter
                self.writer = LogWriter(logdir=os.path.join(self.output_dir, "vdl"))
            except ImportError:  # visualdl is a core requirement; keep running without it if absent
                print("visualdl not installed: no VisualDL logs", file=sys.stderr)
        self.bar = tqdm(total=max_steps, initial=step, disable=not self.is_main or not progress,
                        desc="pretraining", dynamic_ncols=True)

    def step_done(self):
        self.bar.update(1)

    def train(self, m: Dict, step: int):
        """One training record (its keys flat, as summarize gives them, with step, lr, ...)."""
        if not self.is_main:
            return
        self._append(m)
        self._scalars("train", m, step, (int, float))
        self.bar.set_postfix(loss=f"{m['loss']:.3f}", mlm_acc=f"{m['mlm_accuracy']:.3f}",
                             disc_auc=f"{m['disc_auc']:.3f}", tok_s=f"{m['tokens_per_second']:.0f}")
        self.bar.write(" ".join(f"{k}={fmt(v)}" for k, v in m.items()))

    def eval(self, m: Dict, step: int, final: bool = False):
        """One held-out evaluation: recorded as eval_<metric> (and "final"); the final one (after
        the bar is closed) also as eval_results.json."""
        if not self.is_main:
            return
        rec = {("eval_" + k if k != "step" else k): v for k, v in m.items()}
        rec["final"] = final
        self._append(rec)
        self._scalars("eval", m, step, float)
        (self.bar.write if self.bar is not None else print)(eval_line(m))
        if final:
            write_eval_results(self.output_dir, m)

    def close_bar(self):
        self.bar.close()
        self.bar = None

    def close(self):
        if self.writer is not None:
            self.writer.close()

    def _append(self, rec: Dict):
        with open(os.path.join(self.output_dir, METRICS_NAME), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _scalars(self, tag: str, m: Dict, step: int, kinds):
        if self.writer is None:
            return
        for k, v in m.items():
            if k != "step" and isinstance(v, kinds) and not math.isnan(v):
                self.writer.add_scalar(f"{tag}/{k}", v, step)

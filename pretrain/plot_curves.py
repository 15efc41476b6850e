"""Plot a pretraining run's curves: python pretrain/plot_curves.py RUN_DIR/metrics.jsonl OUT.png [--title T]"""
import argparse

from paddle_electra.pretraining.metrics import plot_curves

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("metrics")
    p.add_argument("out")
    p.add_argument("--title", default="")
    a = p.parse_args()
    print(plot_curves(a.metrics, a.out, a.title))

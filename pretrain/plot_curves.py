"""Plot pretraining runs' curves: python pretrain/plot_curves.py RUN_DIR/metrics.jsonl [RUN2/metrics.jsonl ...] OUT.png
[--title T] [--labels A B ...]"""
import argparse

from paddle_electra.pretraining.metrics import plot_curves

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("metrics", nargs="+")
    p.add_argument("out")
    p.add_argument("--labels", nargs="+")
    p.add_argument("--title", default="")
    a = p.parse_args()
    print(plot_curves(a.metrics, a.out, a.title, a.labels))

"""What a (pre)trained encoder's layers carry, before any fine-tuning (the diagnosis in docs/results.md):
a linear probe per layer (mean of the real tokens' states, and the [CLS] state) and the token cosine
per layer. The code is paddle_electra.pretraining.probe; this script is `paddle-electra probe`, which
also takes pretraining checkpoints and run folders and logs their probes to the run's metrics.jsonl.

    python finetune/encoder_probe.py runs/init_small6 runs/pretrained_small6_q \\
        --train-file ../shared/data/chnsenticorp/train.tsv --dev-file ../shared/data/chnsenticorp/dev.tsv
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from paddle_electra.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["probe", *sys.argv[1:]]))

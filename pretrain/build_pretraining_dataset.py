"""Build sharded, memory-mapped ELECTRA pretraining examples from raw text; `paddle-electra build-data`.

    python pretrain/build_pretraining_dataset.py --input a.txt b.txt --output-dir data/pretrain \
        [--max-seq-length 128] [--num-processes 4] [--seed 12345] [--hfl-segment-bug] [--line-is-document]

The logic lives in paddle_electra.pretraining.data (see docs/pretraining.md)."""
import sys

from paddle_electra.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-data", *sys.argv[1:]]))

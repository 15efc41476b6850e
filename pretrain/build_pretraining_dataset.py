"""Build sharded, memory-mapped ELECTRA pretraining examples from raw text.

    python pretrain/build_pretraining_dataset.py --input a.txt b.txt --output-dir data/pretrain \
        [--max-seq-length 128] [--num-processes 4] [--seed 12345] [--hfl-segment-bug] [--line-is-document]

The logic lives in paddle_electra.pretraining.data (see docs/pretraining.md)."""
import argparse
import sys

from paddle_electra.pretraining.data import add_build_arguments, run_build

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_arguments(parser)
    sys.exit(run_build(parser.parse_args()))

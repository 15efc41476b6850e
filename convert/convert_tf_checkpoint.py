#!/usr/bin/env python
"""Convert a released Chinese ELECTRA TensorFlow checkpoint to a paddle-electra folder.

Same as `paddle-electra convert tf ...`; e.g. for HFL's chinese_electra_small_L-12_H-256_A-4.zip:

    unzip chinese_electra_small_L-12_H-256_A-4.zip -d electra_small_tf
    python convert/convert_tf_checkpoint.py --checkpoint electra_small_tf \
        --model chinese-electra-small --output ~/.paddle_electra/models/chinese-electra-small
"""
import argparse
import sys

from paddle_electra.conversion.cli import add_tf_arguments, run_tf
from paddle_electra.runtime import configure_process

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tf_arguments(parser)
    args = parser.parse_args()
    configure_process()
    sys.exit(run_tf(args))

#!/usr/bin/env python
"""Convert a released Chinese ELECTRA TensorFlow checkpoint to a paddle-electra folder;
`paddle-electra convert tf`. E.g. for HFL's chinese_electra_small_L-12_H-256_A-4.zip:

    unzip chinese_electra_small_L-12_H-256_A-4.zip -d electra_small_tf
    python convert/convert_tf_checkpoint.py --checkpoint electra_small_tf \
        --model chinese-electra-small --output ~/.paddle_electra/models/chinese-electra-small
"""
import sys

from paddle_electra.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "tf", *sys.argv[1:]]))

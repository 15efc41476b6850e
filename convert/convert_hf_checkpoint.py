"""Convert Hugging Face Electra repo folders (e.g. hfl/chinese-electra-180g-small-discriminator and
its -generator) to a paddle-electra from_pretrained dir. Same as `paddle-electra convert hf`.

  python convert/convert_hf_checkpoint.py --input hf/chinese-electra-small-discriminator \
      --generator hf/chinese-electra-small-generator --output ~/.paddle_electra/models/chinese-electra-small

pytorch_model.bin files are read by a restricted unpickler (no torch needed, no code run).
"""
import argparse
import sys

from paddle_electra.conversion.cli import add_hf_arguments, run_hf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_hf_arguments(p)
    return run_hf(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

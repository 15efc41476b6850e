"""Convert Hugging Face Electra repo folders (e.g. hfl/chinese-electra-180g-small-discriminator and
its -generator) to a paddle-electra from_pretrained dir; `paddle-electra convert hf`.

  python convert/convert_hf_checkpoint.py --input hf/chinese-electra-small-discriminator \
      --generator hf/chinese-electra-small-generator --output ~/.paddle_electra/models/chinese-electra-small

pytorch_model.bin files are read by a restricted unpickler (no torch needed, no code run).
"""
import sys

from paddle_electra.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "hf", *sys.argv[1:]]))

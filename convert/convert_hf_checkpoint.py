"""Convert Hugging Face Electra repo folders (e.g. hfl/chinese-electra-180g-small-discriminator and
its -generator) to a paddle-electra from_pretrained dir. Same as `paddle-electra convert hf`.

  python convert/convert_hf_checkpoint.py --input hf/chinese-electra-small-discriminator \
      --generator hf/chinese-electra-small-generator --output ~/.paddle_electra/models/chinese-electra-small

pytorch_model.bin files are read by a restricted unpickler (no torch needed, no code run).
"""
import argparse
import sys

from paddle_electra.conversion.hf import convert_hf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True,
                   help="HF repo folder: config.json + model.safetensors or pytorch_model.bin "
                        "(discriminator, generator or bare ElectraModel)")
    p.add_argument("--generator", default=None,
                   help="the matching HF generator folder; the output then holds both (a pretraining dir)")
    p.add_argument("--output", required=True, help="folder to write (replaced atomically)")
    args = p.parse_args(argv)
    out = convert_hf(args.input, args.output, generator_dir=args.generator)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

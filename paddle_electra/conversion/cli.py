"""`paddle-electra convert tf|hf`: released checkpoints -> from_pretrained folders.

    paddle-electra convert tf --checkpoint DIR_OR_PREFIX --model chinese-electra-small --output OUT
    paddle-electra convert tf --checkpoint CKPT --discriminator-config D.json [--generator-config G.json] --output OUT
    paddle-electra convert hf --input DIR [--generator DIR] --output OUT
"""
from __future__ import annotations

import argparse
import sys
import time

from ..config import ConfigError, get_variant
from ..io import CheckpointError, OutputError


def _overwrite_argument(p: argparse.ArgumentParser):
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --output that is not a previous model folder (never the input)")


def add_tf_arguments(p: argparse.ArgumentParser):
    p.add_argument("--checkpoint", required=True,
                   help="the unzipped release folder, a checkpoint prefix (e.g. DIR/electra_small) or one of its "
                        "files; a folder's `checkpoint` file is followed when present")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--discriminator-config", metavar="D.json",
                       help="discriminator config (HF field names; embedding_size may be omitted)")
    which.add_argument("--model", metavar="VARIANT",
                       help="a registered variant (see `paddle-electra list`): both configs come from the registry")
    p.add_argument("--generator-config", metavar="G.json",
                   help="generator config; without it (and without --model) only the discriminator is written")
    p.add_argument("--discriminator-only", action="store_true",
                   help="with --model: leave the generator out")
    p.add_argument("--output", required=True, help="folder to write (replaced only when the conversion succeeds)")
    _overwrite_argument(p)
    p.add_argument("--vocab", default=None,
                   help="vocab.txt to ship (default: the one beside the checkpoint, else the bundled one)")
    p.add_argument("--skip", action="append", default=[], metavar="PATTERN",
                   help="glob of extra checkpoint variables to leave out on purpose (repeatable); by default "
                        "any variable that is neither a weight nor training state is an error")


def add_hf_arguments(p: argparse.ArgumentParser):
    p.add_argument("--input", required=True, help="HF discriminator folder (config.json + weights)")
    p.add_argument("--generator", default=None, help="HF generator folder, to write a pretraining dir")
    p.add_argument("--output", required=True, help="folder to write")
    p.add_argument("--parity", action="store_true",
                   help="run the HF model (needs torch + transformers) and the converted one on the same input "
                        "and record the largest difference in the model card")
    _overwrite_argument(p)


def add_arguments(parser: argparse.ArgumentParser):
    sub = parser.add_subparsers(dest="source", required=True, metavar="{tf,hf}")
    add_tf_arguments(sub.add_parser("tf", help="a released TensorFlow checkpoint (HFL's zips)",
                                    description="Convert a released TensorFlow checkpoint."))
    add_hf_arguments(sub.add_parser("hf", help="HF PyTorch/safetensors weights (hfl/* repos)",
                                    description="Convert HF PyTorch/safetensors weights."))


def _fail(message: str) -> int:
    print(f"paddle-electra convert: error: {message}", file=sys.stderr)
    return 1


def run_tf(args) -> int:
    from .tf import convert_tf_checkpoint  # here: the converters import paddle, which `--help` does not need
    if args.model and args.generator_config:
        return _fail("--generator-config goes with --discriminator-config; --model brings both configs")
    if args.discriminator_only and not args.model:
        return _fail("--discriminator-only goes with --model (without --generator-config only the "
                     "discriminator is written anyway)")
    try:
        if args.model:
            variant = get_variant(args.model)
            disc, gen = variant.discriminator, (None if args.discriminator_only else variant.generator)
        else:
            disc, gen = args.discriminator_config, args.generator_config
        summary = convert_tf_checkpoint(args.checkpoint, args.output, disc, gen, vocab_file=args.vocab,
                                        skip=args.skip, overwrite=args.overwrite, variant=args.model)
    except (CheckpointError, ConfigError, KeyError, FileNotFoundError, OutputError) as e:
        return _fail(e.args[0] if isinstance(e, KeyError) else str(e))
    print(summary.line())
    return 0


def run_hf(args) -> int:
    from .hf import convert_hf  # here: the converters import paddle, which `--help` does not need
    start = time.perf_counter()
    try:
        convert_hf(args.input, args.output, generator_dir=args.generator, overwrite=args.overwrite,
                   parity=args.parity)
    except (CheckpointError, ConfigError, FileNotFoundError, OutputError) as e:
        return _fail(str(e))
    print(f"converted {args.input}{' + ' + args.generator if args.generator else ''} -> {args.output} "
          f"in {time.perf_counter() - start:.2f} s")
    return 0


def run(args) -> int:
    return run_tf(args) if args.source == "tf" else run_hf(args)

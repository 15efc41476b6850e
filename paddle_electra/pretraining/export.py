"""`paddle-electra export pretraining RUN_DIR OUT`: the newest checkpoint of a pretraining run (or a
given checkpoint folder) as a from_pretrained pretraining dir: config.json + model.safetensors (the
discriminator), generator_config.json + generator.safetensors, vocab.txt. ElectraDiscriminator,
ElectraGenerator, ElectraModel, the task heads and ElectraForPreTraining (--init-from) all load it."""
from __future__ import annotations

import os

from ..io import MODEL_DIR, check_output


def export(run_dir: str, out: str, overwrite: bool = False) -> str:
    from ..modeling import ElectraForPreTraining
    from .checkpoint import find_checkpoint
    check_output(out, MODEL_DIR, inputs=[run_dir], overwrite=overwrite)  # never the run itself
    src = find_checkpoint(run_dir)
    model = ElectraForPreTraining.from_pretrained(src)
    vocab = os.path.join(src, "vocab.txt")
    model.save_pretrained(out, vocab_file=vocab if os.path.exists(vocab) else None, overwrite=overwrite)
    return src


def add_arguments(parser):
    parser.add_argument("run_dir", help="a pretraining --output-dir (its newest checkpoint) or one checkpoint folder")
    parser.add_argument("out", help="folder to write (replaced atomically)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty OUT that is not a previous model folder (never the run)")


def run(args):
    src = export(args.run_dir, args.out, overwrite=args.overwrite)
    print(f"exported {src} -> {args.out}")
    return 0

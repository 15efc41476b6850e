"""`paddle-electra list` and `paddle-electra init`."""
from __future__ import annotations

from types import SimpleNamespace


def _list_args(p):
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _list_run(args):
    import json
    from .config import VARIANTS
    rows = [{"name": v.name, "size": v.size, "layers": v.discriminator.num_hidden_layers,
             "hidden": v.discriminator.hidden_size, "embedding": v.discriminator.embedding_size,
             "generator_hidden": v.generator.hidden_size,
             "discriminator_params": v.discriminator.num_parameters(),
             "hf": [v.hf_discriminator, v.hf_generator], "tf_zip": v.tf_zip} for v in VARIANTS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['name']:28s} L={r['layers']:<3d} H={r['hidden']:<5d} E={r['embedding']:<5d} "
              f"G={r['generator_hidden']:<4d} params={r['discriminator_params'] / 1e6:6.1f}M  {r['tf_zip'] or ''}")


def _init_args(p):
    p.add_argument("name", help="registered variant, e.g. chinese-electra-small")
    p.add_argument("--output", required=True, help="folder to write (a pretraining dir: both models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --output that is not a previous model folder")
    p.add_argument("--num-hidden-layers", type=int, default=None,
                   help="override the depth (tiny models for tests)")


def _init_run(args):
    import paddle
    from .config import get_variant
    from .modeling import ElectraForPreTraining
    v = get_variant(args.name)
    disc, gen = v.discriminator, v.generator
    if args.num_hidden_layers:
        disc = disc.replace(num_hidden_layers=args.num_hidden_layers)
        gen = gen.replace(num_hidden_layers=args.num_hidden_layers)
    paddle.seed(args.seed)
    ElectraForPreTraining(disc, gen).save_pretrained(args.output, overwrite=args.overwrite)
    print(f"wrote randomly initialised {v.name} (discriminator + generator) to {args.output}")


list_variants = SimpleNamespace(add_arguments=_list_args, run=_list_run)
init = SimpleNamespace(add_arguments=_init_args, run=_init_run)

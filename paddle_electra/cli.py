"""The `paddle-electra` command. Each subcommand's parser and logic live in the module that owns
the feature; this file only lists them (imports are lazy so `--help` is fast)."""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module that defines `add_arguments(parser)` and `run(args)`
SUBCOMMANDS = {
    "list": ("paddle_electra.commands", "list_variants", "list the registered released variants"),
    "init": ("paddle_electra.commands", "init", "write randomly initialised weights of a variant"),
    "convert": ("paddle_electra.conversion.cli", None, "convert released TF or HF checkpoints"),
    "export-pdparams": ("paddle_electra.conversion.paddlenlp_export", None,
                        "export a from_pretrained dir as PaddleNLP-loadable .pdparams + config"),
    "export-discriminator": ("paddle_electra.pretraining.export", None,
                             "write from_pretrained dirs of a pretraining run's discriminator and generator"),
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="paddle-electra", description="Chinese ELECTRA for PaddlePaddle")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, attr, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(_module=module, _attr=attr)
        # parsers are built only for the subcommand asked for, so one broken optional
        # dependency cannot break the others
        if argv is None and len(sys.argv) > 1 and sys.argv[1] == name or argv and argv[0] == name:
            _target(module, attr).add_arguments(p)
    args = parser.parse_args(argv)
    return _target(args._module, args._attr).run(args) or 0


def _target(module, attr):
    mod = importlib.import_module(module)
    return getattr(mod, attr) if attr else mod


if __name__ == "__main__":
    sys.exit(main())

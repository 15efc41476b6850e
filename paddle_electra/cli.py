"""The `paddle-electra` command: every job of the library, each subcommand a thin
`add_arguments(parser)` / `run(args)` pair over the module that owns it. The repo scripts
(pretrain/*.py, finetune/run_finetuning.py, convert/*.py) call `main` with their subcommand.

This is the CLI layer, the one place that sets process-wide state (runtime.configure_process:
device, CPU threads, denormals) and turns errors into exit codes: library code raises (ValueError
and its subclasses for bad input), `main` prints `paddle-electra CMD: error: ...` and returns 1.
Parsers are built only for the subcommand asked for (imports are lazy, so `--help` is fast and one
broken optional dependency cannot break the other subcommands).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import SimpleNamespace
from typing import List, Optional

# the environment variable that makes main() show the traceback of an error instead of one line
TRACEBACK_ENV = "PADDLE_ELECTRA_TRACEBACK"


def _configure(args, device=None, num_threads=None):
    from .runtime import configure_process
    return configure_process(device if device is not None else getattr(args, "device", None),
                             num_threads if num_threads is not None else getattr(args, "num_threads", None))


# --- pretrain: the trainer's own flags, and the launcher for several processes ------------------------
def _pretrain_arguments(p):
    from .distributed import add_launch_arguments
    from .pretraining.config import add_arguments
    add_arguments(p)  # PretrainConfig's fields
    add_launch_arguments(p)  # --launch-log-dir defaults to OUTPUT_DIR/launch_logs


def _pretrain_run(args):
    from . import distributed
    from .pretraining import trainer
    from .pretraining.config import PretrainConfig
    if args.nproc_per_node > 1 and not distributed.launched():
        return distributed.relaunch("pretrain", args.cli_argv, args.nproc_per_node,
                                    args.launch_log_dir or os.path.join(args.output_dir, "launch_logs"))
    _configure(args)
    return trainer.run(PretrainConfig.from_args(args), command_args=vars(args))  # run_info.json records them all


# --- serve, export, demo ------------------------------------------------------------------------------
def _serve_arguments(p):
    from . import serving
    serving.add_arguments(p)  # -c / -m, --host (127.0.0.1), --workers, the request limits


def _serve_run(args):
    """`hub serving start` through paddle_electra.serving (loopback, bounded requests)."""
    from . import serving
    _configure(args)
    return serving.run(args)


EXPORTS = {  # export TARGET -> (module, help[, its add_arguments / run names])
    "pretraining": ("paddle_electra.pretraining.export",
                    "a pretraining run's newest checkpoint as from_pretrained dirs (discriminator + generator)"),
    "paddlenlp": ("paddle_electra.conversion.paddlenlp_export",
                  "a from_pretrained dir as PaddleNLP-loadable .pdparams + config"),
    "onnx": ("paddle_electra.deploy",
             "a fine-tuned model as a self-contained ONNX folder (model.onnx, vocab, config, label map, export.json)",
             "onnx_add_arguments", "onnx_run"),
    "paddle-inference": ("paddle_electra.deploy",
                         "a fine-tuned model as a self-contained Paddle Inference folder (model.json + "
                         "model.pdiparams, vocab, config, label map, export.json)",
                         "paddle_inference_add_arguments", "paddle_inference_run"),
}


def _export_entry(name: str, which: int):
    entry = EXPORTS[name]
    attr = entry[2 + which] if len(entry) > 2 else ("add_arguments", "run")[which]
    return getattr(importlib.import_module(entry[0]), attr)


def _export_arguments(p):
    sub = p.add_subparsers(dest="target", required=True, metavar="{" + ",".join(EXPORTS) + "}")
    for name, entry in EXPORTS.items():
        _export_entry(name, 0)(sub.add_parser(name, help=entry[1], description=entry[1]))


def _export_run(args):
    _configure(args)
    return _export_entry(args.target, 1)(args)


def _pair(module, add="add_arguments", run="run", configure=True):
    """The add_arguments / run of `module` (dotted attribute paths in it), run after configure_process
    when `configure`."""
    def get(path):
        obj = importlib.import_module(module)
        for name in path.split("."):
            obj = getattr(obj, name)
        return obj

    def run_(args):
        if configure:
            _configure(args)
        return get(run)(args)
    return SimpleNamespace(add_arguments=lambda p: get(add)(p), run=run_)


# subcommand -> (help, add_arguments / run pair)
SUBCOMMANDS = {
    "build-data": ("build sharded pretraining examples from raw text",
                   _pair("paddle_electra.pretraining.data", "add_build_arguments", "run_build", configure=False)),
    "pretrain": ("ELECTRA replaced-token-detection pretraining (one or --nproc-per-node processes)",
                 SimpleNamespace(add_arguments=_pretrain_arguments, run=_pretrain_run)),
    "finetune": ("fine-tune on a published task (the original's run_finetuning.py)",
                 _pair("paddle_electra.finetuning.cli", "finetune.add_arguments", "finetune.run", configure=False)),
    "evaluate": ("score a fine-tuned model on a task's dev (and test) split, without training",
                 _pair("paddle_electra.finetuning.cli", "evaluate.add_arguments", "evaluate.run", configure=False)),
    "predict": ("predict with a fine-tuned model over a file of texts (JSON lines out)",
                _pair("paddle_electra.batch_predict")),
    "probe": ("frozen-encoder probes (per layer: mean of tokens and [CLS], linear) of a model, or of a pretraining "
              "checkpoint into its run's metrics.jsonl", _pair("paddle_electra.pretraining.probe")),
    "serve": ("serve PaddleHub modules over HTTP on 127.0.0.1",
              SimpleNamespace(add_arguments=_serve_arguments, run=_serve_run)),
    "convert": ("convert released TF or HF checkpoints", _pair("paddle_electra.conversion.cli")),
    "export": ("export a model: ONNX or Paddle Inference folders to deploy, a pretraining run's models, or for PaddleNLP",
               SimpleNamespace(add_arguments=_export_arguments, run=_export_run)),
    "init": ("write randomly initialised weights of a variant",
             _pair("paddle_electra.commands", "init.add_arguments", "init.run")),
    "list": ("list the registered released variants",
             _pair("paddle_electra.commands", "list_variants.add_arguments", "list_variants.run", configure=False)),
    "demo": ("the main job end to end on the bundled sample (pretrain, fine-tune, hub, serving)",
             _pair("paddle_electra.demo", configure=False)),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of `command` only (None: the subcommand list)."""
    parser = argparse.ArgumentParser(prog="paddle-electra", description="Chinese ELECTRA for PaddlePaddle")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, (help_, pair) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            pair.add_arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from .runtime import quiet_third_party
    quiet_third_party()  # before paddle is imported: ccache warning, glog notices
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(command).parse_args(argv)
    args.cli_argv = argv[1:]  # what --nproc-per-node re-runs in each process
    if "PADDLE_TRAINER_ID" not in os.environ:  # model cards record the command (a launched worker: its parent's)
        import shlex
        os.environ["PADDLE_ELECTRA_COMMAND_LINE"] = " ".join(["paddle-electra", *map(shlex.quote, argv)])
    try:
        return SUBCOMMANDS[args.command][1].run(args) or 0
    except (ValueError, FileNotFoundError, ImportError) as e:  # bad input, a missing optional package: named
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"paddle-electra {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

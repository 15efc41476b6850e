"""`paddle-electra finetune` / `paddle-electra evaluate` (and finetune/run_finetuning.py): the
arguments of the original's run_finetuning.py over paddle_electra.finetuning.trainer, as
`add_arguments(parser)` / `run(args)` pairs. Errors are raised (HparamsError, DataError), for the
command layer to print."""
from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace


def help_epilog() -> str:
    """The tasks and every hparam key with its default, for --help."""
    import dataclasses
    import textwrap
    from .config import FinetuneConfig
    from .tasks import TASKS
    tasks = ", ".join(f"{n} ({TASKS[n].spec.name})" for n in sorted(TASKS))
    keys = []
    for f in dataclasses.fields(FinetuneConfig):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        keys.append(f"{f.name}={json.dumps(default, ensure_ascii=False)}")
    wrap = lambda text: textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="  ",  # noqa: E731
                                      break_on_hyphens=False)
    return ("tasks (--task, or task_names in the hparams):\n" + wrap(tasks) + "\n\n"
            "hparam keys and their defaults (--hparams JSON or --set KEY=VALUE; null: the task's or the model "
            "size's rule, see docs/finetuning.md):\n" + wrap(", ".join(keys)))


def add_arguments(p):
    import argparse
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = help_epilog()
    p.add_argument("--data-dir", default=".",
                   help="holds finetuning_data/<task>/, models/, results/ (default: the current folder)")
    p.add_argument("--model-name", required=True,
                   help="from_pretrained dir, name under <data-dir>/models/, or registered variant")
    p.add_argument("--hparams", default="{}", help="JSON file or JSON object string (the original's keys)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override one hparam, e.g. --set seed=3 --set max_train_examples=2000")
    p.add_argument("--task", default=None, help="the task (hparam task_names), e.g. chnsenticorp; see below")
    for split in ("train", "dev", "test"):
        p.add_argument(f"--{split}-file", default=None, metavar="FILE",
                       help=f"the {split} split's file, relative to the current folder (hparam {split}_file)")
    p.add_argument("--labels", default=None, metavar="A,B,C",
                   help="classification: the label names, so that your own TSV needs no task class (hparam labels)")


def config_from_args(args, **fixed):
    """The FinetuneConfig of parsed arguments: --hparams, then each --set, then the flags (--task,
    --train-file, ... resolved against the current folder), then `fixed`."""
    from .config import FinetuneConfig, HparamsError
    flags = {}
    if getattr(args, "task", None):
        flags["task_names"] = [args.task]
    for split in ("train", "dev", "test"):
        path = getattr(args, f"{split}_file", None)
        if path:
            if not os.path.isfile(path):
                raise HparamsError(f"--{split}-file {path}: no such file")
            flags[f"{split}_file"] = os.path.abspath(path)
    if getattr(args, "labels", None):
        flags["labels"] = [x.strip() for x in args.labels.split(",")]
    fixed = {**flags, **fixed}
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HparamsError(f"--set {item!r}: expected KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return FinetuneConfig.load(args.hparams, data_dir=args.data_dir, model_name=args.model_name,
                               **{**overrides, **fixed})


def _finetune_arguments(p):
    from ..distributed import add_launch_arguments
    add_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="keep the trials that the results file already holds (a run stopped between trials, "
                        "the same hparams) and run the rest")
    add_launch_arguments(p)  # --launch-log-dir defaults to <results>/launch_logs


def _run(args, **fixed):
    from .. import distributed
    from ..runtime import configure_process
    from .trainer import check_processes, run_finetuning
    config = config_from_args(args, **fixed)
    nproc = getattr(args, "nproc_per_node", 1)
    if nproc > 1 and not distributed.launched():
        check_processes(config.train_batch_size, nproc)  # refused here, before the processes start
        log_dir = args.launch_log_dir or os.path.join(os.path.dirname(config.results_path()), "launch_logs")
        return distributed.relaunch("finetune", args.cli_argv, nproc, log_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configure_process(config.device, config.num_threads)
    run_finetuning(config, resume=getattr(args, "resume", False))
    return 0


# fine-tune (every trial), then score dev (and test); --nproc-per-node N: N data-parallel processes
finetune = SimpleNamespace(add_arguments=_finetune_arguments, run=_run)
# score a fine-tuned model (--model-name) on dev (and test): no training, one trial
evaluate = SimpleNamespace(add_arguments=add_arguments,
                           run=lambda args: _run(args, do_train=False, save_model=False, num_trials=1))

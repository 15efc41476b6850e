"""`paddle-electra finetune` / `paddle-electra evaluate` (and finetune/run_finetuning.py): the
arguments of the original's run_finetuning.py over paddle_electra.finetuning.trainer, as
`add_arguments(parser)` / `run(args)` pairs. Errors are raised (HparamsError, DataError), for the
command layer to print."""
from __future__ import annotations

import json
import logging
import os
from types import SimpleNamespace


def add_arguments(p):
    p.add_argument("--data-dir", required=True, help="holds finetuning_data/<task>/, models/, results/")
    p.add_argument("--model-name", required=True,
                   help="from_pretrained dir, name under <data-dir>/models/, or registered variant")
    p.add_argument("--hparams", default="{}", help="JSON file or JSON object string (the original's keys)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override one hparam, e.g. --set seed=3 --set max_train_examples=2000")


def config_from_args(args, **fixed):
    """The FinetuneConfig of parsed arguments: --hparams, then each --set, then `fixed`."""
    from .config import FinetuneConfig, HparamsError
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
    run_finetuning(config)
    return 0


# fine-tune (every trial), then score dev (and test); --nproc-per-node N: N data-parallel processes
finetune = SimpleNamespace(add_arguments=_finetune_arguments, run=_run)
# score a fine-tuned model (--model-name) on dev (and test): no training, one trial
evaluate = SimpleNamespace(add_arguments=add_arguments,
                           run=lambda args: _run(args, do_train=False, save_model=False, num_trials=1))

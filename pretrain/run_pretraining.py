"""ELECTRA replaced-token-detection pretraining on paddle.distributed.fleet.

    python pretrain/run_pretraining.py --data-dir D --model chinese-electra-small --output-dir O
    python -m paddle.distributed.launch --nproc_per_node 2 pretrain/run_pretraining.py --data-dir D ...

Resumes from the newest complete checkpoint in O/checkpoints. The loop lives in
paddle_electra.pretraining.trainer (see docs/pretraining.md for all flags)."""
import argparse
import sys

from paddle_electra.pretraining.trainer import add_arguments, run
from paddle_electra.runtime import configure_process

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    configure_process(args.device, args.num_threads)
    sys.exit(run(args))

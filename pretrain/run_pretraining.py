"""ELECTRA replaced-token-detection pretraining on paddle.distributed.fleet; `paddle-electra pretrain`.

    python pretrain/run_pretraining.py --data-dir D --model chinese-electra-small --output-dir O
    python -m paddle.distributed.launch --nproc_per_node 2 pretrain/run_pretraining.py --data-dir D ...

Resumes from the newest complete checkpoint in O/checkpoints. The loop lives in
paddle_electra.pretraining.trainer, its flags in paddle_electra.pretraining.config (PretrainConfig;
docs/pretraining.md describes them)."""
import sys

from paddle_electra.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))

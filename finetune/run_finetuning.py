"""Fine-tune Chinese ELECTRA on a published task, as HFL's run_finetuning.py:

    python finetune/run_finetuning.py --data-dir D --model-name M --hparams finetune/params_<task>.json

M is a from_pretrained dir, a folder under D/models/, or a registered variant. --hparams is a JSON
file or a JSON object string with the original's keys (see paddle_electra/finetuning/config.py).
The logic lives in paddle_electra.finetuning (this is `paddle-electra finetune`).
"""
import sys

from paddle_electra.cli import main

if __name__ == "__main__":
    sys.exit(main(["finetune", *sys.argv[1:]]))

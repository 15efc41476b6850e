"""Fine-tune Chinese ELECTRA on a published task, as HFL's run_finetuning.py:

    python finetune/run_finetuning.py --data-dir D --model-name M --hparams finetune/params_<task>.json

M is a from_pretrained dir, a folder under D/models/, or a registered variant. --hparams is a JSON
file or a JSON object string with the original's keys (see paddle_electra/finetuning/config.py).
The logic lives in paddle_electra.finetuning (this is `paddle-electra finetune`).
"""
import argparse
import sys


def main(argv=None):
    from paddle_electra.finetuning.cli import finetune
    from paddle_electra.finetuning.config import HparamsError
    from paddle_electra.io import DataError
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    finetune.add_arguments(p)
    args = p.parse_args(argv)
    try:
        return finetune.run(args)
    except (HparamsError, DataError) as e:
        p.exit(2, f"{p.prog}: error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())

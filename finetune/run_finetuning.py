"""Fine-tune Chinese ELECTRA on a published task, as HFL's run_finetuning.py:

    python finetune/run_finetuning.py --data-dir D --model-name M --hparams finetune/params_<task>.json

M is a from_pretrained dir, a folder under D/models/, or a registered variant. --hparams is a JSON
file or a JSON object string with the original's keys (see paddle_electra/finetuning/config.py).
The logic lives in paddle_electra.finetuning.
"""
import argparse
import json
import logging
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="holds finetuning_data/<task>/, models/, results/")
    p.add_argument("--model-name", required=True, help="from_pretrained dir, name under <data-dir>/models/, or variant")
    p.add_argument("--hparams", default="{}", help="JSON file or JSON object string")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="override one hparam, e.g. --set seed=3 --set max_train_examples=2000")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from paddle_electra.finetuning.config import FinetuneConfig, HparamsError
    from paddle_electra.finetuning.trainer import run_finetuning
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    try:
        config = FinetuneConfig.load(args.hparams, data_dir=args.data_dir, model_name=args.model_name, **overrides)
    except HparamsError as e:
        p.error(str(e))
    from paddle_electra.runtime import configure_process
    configure_process(config.device, config.num_threads)
    run_finetuning(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())

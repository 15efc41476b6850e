"""Score CMRC 2018 / DRCD predictions as the official CMRC 2018 script (v5) does:

    python finetune/cmrc2018_drcd_evaluate.py DATASET.json PREDICTIONS.json

PREDICTIONS.json is {question_id: answer_text}. The last line printed is one JSON object with
AVERAGE, F1, EM (percent), TOTAL, SKIP and FILE, as the official script prints it. Semantics and
the one documented deviation: paddle_electra/tasks/metrics.py.
"""
import argparse
import json
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset_file", help="official dataset file (SQuAD format)")
    p.add_argument("prediction_file", help="your prediction file")
    args = p.parse_args(argv)
    from paddle_electra.tasks.metrics import cmrc_evaluate_files
    try:
        result = cmrc_evaluate_files(args.dataset_file, args.prediction_file)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

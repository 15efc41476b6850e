"""What a (pre)trained encoder's layers carry, before any fine-tuning (the diagnosis in docs/results.md):

  - a linear probe per layer: the frozen encoder's states (mean over the real tokens, and the [CLS]
    state) -> logistic regression (scikit-learn, after standardising), trained on the first --n-train
    examples of a classification file (read by the fine-tuning task --task) and scored on the first
    --n-dev examples of another;
  - anisotropy per layer: the mean cosine similarity between the states of the tokens of one sentence
    ([CLS] and [SEP] left out), over the first 40 dev sentences.

    python finetune/encoder_probe.py runs/init_small6 runs/pretrained_small6_q \
        --train-file ../shared/data/chnsenticorp/train.tsv --dev-file ../shared/data/chnsenticorp/dev.tsv
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def layer_states(model, tokenizer, texts, max_length, batch_size=32):
    """Per layer (0 = embeddings output): [N, 2H] = mean of the real tokens' states, then the [CLS] state."""
    import paddle
    out = {}
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], max_length=max_length, truncation=True, padding=True)
        mask = np.asarray(enc["attention_mask"], dtype="float32")[..., None]
        with paddle.no_grad():
            _, hidden = model(paddle.to_tensor(enc["input_ids"]), attention_mask=paddle.to_tensor(enc["attention_mask"]),
                              output_hidden_states=True)
        for layer, h in enumerate(hidden):
            h = h.numpy()
            out.setdefault(layer, []).append(np.concatenate([(h * mask).sum(1) / mask.sum(1), h[:, 0]], axis=1))
    return {k: np.concatenate(v) for k, v in out.items()}


def token_cosine(model, tokenizer, texts, max_chars=62):
    import paddle
    sims = {}
    for text in texts:
        ids = tokenizer(text[:max_chars])["input_ids"]
        with paddle.no_grad():
            _, hidden = model(paddle.to_tensor([ids]), output_hidden_states=True)
        for layer, h in enumerate(hidden):
            x = h[0].numpy()[1:-1]
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            n = len(x)
            if n > 1:
                sims.setdefault(layer, []).append(((x @ x.T).sum() - n) / (n * n - n))
    return {layer: float(np.mean(v)) for layer, v in sims.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dirs", nargs="+", help="from_pretrained dirs (backbone, discriminator or task model)")
    p.add_argument("--task", default="chnsenticorp", help="a single-sentence classification task")
    p.add_argument("--train-file", required=True)
    p.add_argument("--dev-file", required=True)
    p.add_argument("--n-train", type=int, default=1600)
    p.add_argument("--n-dev", type=int, default=600)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--num-threads", type=int, default=None)
    args = p.parse_args(argv)

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from paddle_electra import ElectraModel, ElectraTokenizer
    from paddle_electra.finetuning.config import FinetuneConfig
    from paddle_electra.finetuning.tasks import get_task
    from paddle_electra.runtime import configure_process
    configure_process(num_threads=args.num_threads)
    tokenizer = ElectraTokenizer()
    task = get_task(args.task, FinetuneConfig(task_names=[args.task]), tokenizer)

    def read(path, split, n):
        examples = task.read_file(path, split)[:n]
        return [e.text_a for e in examples], np.array([e.label for e in examples])

    train_x, train_y = read(args.train_file, "train", args.n_train)
    dev_x, dev_y = read(args.dev_file, "dev", args.n_dev)
    for model_dir in args.model_dirs:
        model = ElectraModel.from_pretrained(model_dir)
        model.eval()
        train_f = layer_states(model, tokenizer, train_x, args.max_length)
        dev_f = layer_states(model, tokenizer, dev_x, args.max_length)
        hidden = train_f[0].shape[1] // 2
        probe = {}
        for layer in train_f:
            for name, cols in (("mean", slice(0, hidden)), ("cls", slice(hidden, 2 * hidden))):
                clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
                clf.fit(train_f[layer][:, cols], train_y)
                probe[f"layer{layer}_{name}"] = round(100 * clf.score(dev_f[layer][:, cols], dev_y), 1)
        cos = {f"layer{k}": round(v, 3) for k, v in token_cosine(model, tokenizer, dev_x[:40]).items()}
        print(json.dumps({"model": model_dir, "probe_accuracy": probe, "token_cosine": cos}, ensure_ascii=False),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

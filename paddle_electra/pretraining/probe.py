"""What a (pre)trained encoder's layers carry, before any fine-tuning: `paddle-electra probe`.

- a linear probe per layer: the frozen encoder's states (mean over the real tokens, and the [CLS]
  state) -> logistic regression (scikit-learn, after standardising), trained on the first --n-train
  examples of a classification file (read by the fine-tuning task --task) and scored on the first
  --n-dev examples of another (accuracy, %);
- anisotropy per layer: the mean cosine similarity between the states of the tokens of one sentence
  ([CLS] and [SEP] left out), over the first 40 dev sentences.

A model is a from_pretrained dir, a pretraining checkpoint folder (RUN/checkpoints/checkpoint-N) or a
pretraining run folder (its newest checkpoint; every one with --all-checkpoints). The probes of a
checkpoint are appended to its run's metrics.jsonl at the checkpoint's step (keys probe_mean_layerI,
probe_cls_layerI, probe_cosine_layerI; plot_curves draws them) and to its VisualDL log (RUN/vdl/probe, tags probe/...);
`--log-to RUN --step N` does the same for another model (e.g. the random initialisation at step 0).

    paddle-electra probe runs/pt/checkpoints/checkpoint-00000600 \\
        --train-file ../shared/data/chnsenticorp/train.tsv --dev-file ../shared/data/chnsenticorp/dev.tsv
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np


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


def read_examples(task_name: str, path: str, split: str, n: int, tokenizer):
    from ..finetuning.config import FinetuneConfig
    from ..finetuning.tasks import get_task
    task = get_task(task_name, FinetuneConfig(task_names=[task_name]), tokenizer)
    examples = task.read_file(path, split)[:n]
    return [e.text_a for e in examples], np.array([e.label for e in examples])


def probe(model_dir: str, train, dev, tokenizer, max_length: int) -> Dict:
    """{"probe_accuracy": {"layerI_mean" | "layerI_cls": %}, "token_cosine": {"layerI": cos}} of the
    encoder in `model_dir`; `train`, `dev`: (texts, labels)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError as e:
        raise ImportError(f"the probes need scikit-learn (pip install scikit-learn): {e}") from None
    from ..modeling import ElectraModel
    model = ElectraModel.from_pretrained(model_dir)
    model.eval()
    train_f = layer_states(model, tokenizer, train[0], max_length)
    dev_f = layer_states(model, tokenizer, dev[0], max_length)
    hidden = train_f[0].shape[1] // 2
    acc = {}
    for layer in train_f:
        for name, cols in (("mean", slice(0, hidden)), ("cls", slice(hidden, 2 * hidden))):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
            clf.fit(train_f[layer][:, cols], train[1])
            acc[f"layer{layer}_{name}"] = round(100 * clf.score(dev_f[layer][:, cols], dev[1]), 1)
    cos = {f"layer{k}": round(v, 3) for k, v in token_cosine(model, tokenizer, dev[0][:40]).items()}
    return {"probe_accuracy": acc, "token_cosine": cos}


def targets(path: str, all_checkpoints: bool = False) -> List[Tuple[str, Optional[int], Optional[str]]]:
    """[(model dir, checkpoint step or None, run folder or None)] for a model dir, a checkpoint folder
    or a run folder."""
    from .checkpoint import MODEL_SUBDIR, STATE_NAME, checkpoint_dirs, read_state
    if os.path.exists(os.path.join(path, STATE_NAME)):
        parent = os.path.dirname(os.path.abspath(path))
        run = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else None
        return [(os.path.join(path, MODEL_SUBDIR), int(read_state(path)["step"]), run)]
    found = checkpoint_dirs(path)
    if found:
        chosen = found if all_checkpoints else found[-1:]
        return [(os.path.join(c, MODEL_SUBDIR), int(read_state(c)["step"]), os.path.abspath(path)) for c in chosen]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such model, checkpoint or run folder")
    return [(path, None, None)]


def record(result: Dict, step: int, model_dir: str, args) -> Dict:
    """The metrics.jsonl record of one probe: flat keys, as the trainer's."""
    rec = {"step": step, "probe_model": os.path.abspath(model_dir), "probe_task": args.task,
           "probe_n_train": args.n_train, "probe_n_dev": args.n_dev, "probe_max_length": args.max_length}
    for k, v in result["probe_accuracy"].items():  # layerI_mean -> probe_mean_layerI
        layer, kind = k.split("_")
        rec[f"probe_{kind}_{layer}"] = v
    rec.update({f"probe_cosine_{k}": v for k, v in result["token_cosine"].items()})
    return rec


def log(run_dir: str, rec: Dict):
    """Append `rec` to RUN/metrics.jsonl; rewrite the VisualDL run RUN/vdl/probe (probe/<metric>) from
    every probe record there (VisualDL shows one log file per folder, so the folder holds one)."""
    from .metrics import read_metrics
    from .checkpoint import METRICS_NAME
    metrics = os.path.join(run_dir, METRICS_NAME)
    with open(metrics, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
    try:
        from visualdl import LogWriter
    except ImportError:
        return
    folder = os.path.join(run_dir, "vdl", "probe")
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.startswith("vdlrecords."):
            os.remove(os.path.join(folder, name))
    with LogWriter(logdir=folder) as w:
        latest = {r["step"]: r for r in read_metrics(metrics)[2]}  # a step probed again: its last record
        for _, r in sorted(latest.items()):
            for k, v in r.items():
                if k.startswith(("probe_mean_", "probe_cls_", "probe_cosine_")):
                    w.add_scalar("probe/" + k[len("probe_"):], v, r["step"])


def add_arguments(p):
    p.add_argument("models", nargs="+", help="from_pretrained dirs (backbone, discriminator or task model), pretraining "
                                             "checkpoint folders, or pretraining run folders (their newest checkpoint)")
    p.add_argument("--task", default="chnsenticorp", help="a single-sentence classification task")
    p.add_argument("--train-file", required=True)
    p.add_argument("--dev-file", required=True)
    p.add_argument("--n-train", type=int, default=1600)
    p.add_argument("--n-dev", type=int, default=600)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--all-checkpoints", action="store_true", help="a run folder: probe every checkpoint it keeps")
    p.add_argument("--log-to", help="append the records to this run's metrics.jsonl (default: a checkpoint's own run)")
    p.add_argument("--step", type=int, help="with --log-to: the step to log a model that is not a checkpoint at")
    p.add_argument("--no-log", action="store_true", help="print only; write nothing")
    p.add_argument("--device", help="cpu, gpu, gpu:1 (default: GPU when present)")
    p.add_argument("--num-threads", type=int, default=None)


def run(args) -> int:
    from ..tokenizer import ElectraTokenizer
    if args.step is not None and not args.log_to:
        raise ValueError("--step needs --log-to")
    if args.log_to and not os.path.isdir(args.log_to):
        raise FileNotFoundError(f"--log-to {args.log_to}: no such run folder")
    todo = [t for m in args.models for t in targets(m, args.all_checkpoints)]
    tokenizer = ElectraTokenizer()
    train = read_examples(args.task, args.train_file, "train", args.n_train, tokenizer)
    dev = read_examples(args.task, args.dev_file, "dev", args.n_dev, tokenizer)
    for model_dir, step, run_dir in todo:
        result = probe(model_dir, train, dev, tokenizer, args.max_length)
        print(json.dumps({"model": model_dir, **({"step": step} if step is not None else {}), **result},
                         ensure_ascii=False), flush=True)
        where = args.log_to or run_dir
        step = args.step if args.step is not None else step
        if args.no_log or where is None:
            continue
        if step is None:
            raise ValueError(f"{model_dir} is not a checkpoint: give --step to log it to {where}")
        log(where, record(result, step, model_dir, args))
        print(f"logged to {os.path.join(where, 'metrics.jsonl')} at step {step}", flush=True)
    return 0

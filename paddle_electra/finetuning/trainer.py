"""The fine-tuning loop, as the original's run_finetuning.py: for each trial, load the pretrained
weights with a new head, train with AdamW + layerwise LR decay + 10% warmup + linear decay, score
dev (and test), save the model; then report every metric's max and mean over the trials.

Outputs (the original's layout under data_dir, or results_dir / output_dir when set):
  results/<task>_results.json          every trial's scores, the max and mean, the hparams
  results/<task>_qa/<task>_<split>_preds.json   QA predictions {question_id: answer_text}
  results/<task>_train_trial<k>.jsonl  training loss / lr every log_every steps (+ VisualDL logs)
  finetuning_models/<task>_model_<k>/  the fine-tuned model (from_pretrained dir with its label map)

Several processes (`paddle-electra finetune --nproc-per-node N`, or under paddle.distributed.launch):
data parallel. train_batch_size stays the global batch: every process takes its 1/N of each global
batch (the same shuffled order everywhere), DataParallel averages the gradients, the steps and the
learning-rate schedule are those of one process, so the run optimises as one process does up to
dropout masks and float rounding. Evaluation is sharded (each rank predicts every N-th feature, the
rows gathered on every rank: gloo ends a collective that waits more than 30 s, so no rank may wait
for another's whole evaluation); only rank 0 writes (logs, VisualDL, results, predictions, models).
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import paddle

from ..distributed import init_collective, process_env
from ..modeling import set_execution_modes
from ..optimization import create_optimizer
from .. import model_card
from ..tasks import FINETUNING_TASK_KEY, DygraphPredictor, output_rows
from .config import FinetuneConfig, HparamsError
from .tasks import DataError, Task, get_task

logger = logging.getLogger(__name__)


def resolve_model(config: FinetuneConfig) -> str:
    """--model-name: a from_pretrained dir, a name under <data_dir>/models/, or a registered variant."""
    name = config.model_name
    if not name:
        raise ValueError("no model given (--model-name)")
    if os.path.isdir(name):
        return name
    under = os.path.join(config.data_dir, "models", name)
    if os.path.isdir(under):
        return under
    return name  # a registered variant: resolve.resolve finds or explains it


def set_seed(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


# --- prediction: dygraph or the fast inference path ---------------------------------------------------
class InferencePredictor:
    """The fast path: the model saved to a temporary folder, exported to a static graph and run by
    paddle_electra.inference.ElectraPredictor (Paddle Inference, oneDNN on CPU)."""

    def __init__(self, model, task: Task):
        import tempfile
        from ..inference import ElectraPredictor
        self._tmp = tempfile.TemporaryDirectory(prefix="electra-eval-")
        path = model.save_pretrained(os.path.join(self._tmp.name, "model"))
        # Paddle Inference: a one-off export per evaluation would not pay back an ONNX conversion
        # (its threads: the cores shared by this machine's processes of the job, the predictor's default)
        self._predictor = ElectraPredictor.from_pretrained(path, task=task.spec.name, engine="paddle")

    def predict_batches(self, input_ids, token_type_ids, batch_size: int, **kw):
        return self._predictor.predict_batches(input_ids, token_type_ids, batch_size=batch_size, **kw)


# the tasks whose evaluation `eval_backend: auto` runs in dygraph: the joint QA head's beam ran slower
# under oneDNN with per-batch lengths (29 s vs 16 s on 96 windows); the rest is faster on Paddle Inference
DYGRAPH_EVAL_TASKS = ("reading-comprehension",)


def make_predictor(model, task: Task, backend: str = "dygraph"):
    """Something with `predict_batches(input_ids, token_type_ids, batch_size)`: `dygraph` runs the
    layer itself; `inference` exports it and runs Paddle Inference; `auto` takes inference but for
    DYGRAPH_EVAL_TASKS (span QA, see FinetuneConfig.eval_backend)."""
    if backend == "auto":
        backend = "dygraph" if task.spec.name in DYGRAPH_EVAL_TASKS else "inference"
    if backend == "inference":
        return InferencePredictor(model, task)
    return DygraphPredictor(model, task.spec)


def predict(task: Task, model, predictor, features: list, batch_size: int,
            sharded: bool = False) -> List[Dict[str, np.ndarray]]:
    """The output rows ({name: array}, length axes cut to the feature) of every feature, in feature
    order; batches group features of similar length, each padded to its longest (batching.run_bucketed).
    `sharded` (every process of a data-parallel job calls it): each rank predicts every N-th feature
    and all get every row."""
    world, rank = process_env() if sharded else (1, 0)
    mine = features[rank::world]
    rows = output_rows(task.spec, model, predictor.predict_batches(
        [f.input_ids for f in mine], [f.token_type_ids for f in mine], batch_size=batch_size,
        pad_multiple=1)) if mine else []
    if world == 1:
        return rows
    import paddle.distributed as dist
    parts: list = []
    dist.all_gather_object(parts, rows)
    out: list = [None] * len(features)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out


class Evaluation(NamedTuple):
    scores: Dict[str, float]
    examples: list
    features: list
    rows: List[Dict[str, np.ndarray]]


def evaluate(task: Task, model, split: str, predictor=None, sharded: bool = False) -> Evaluation:
    examples = task.get_examples(split)
    features = task.featurize(examples, is_training=False)
    predictor = predictor or make_predictor(model, task, task.config.eval_backend)
    rows = predict(task, model, predictor, features, task.config.eval_batch_size, sharded)
    return Evaluation(task.score(split, examples, features, rows), examples, features, rows)


def format_results(task_name: str, res: Dict[str, float]) -> str:
    return f"{task_name}: " + " - ".join(f"{k}: {v:.2f}" for k, v in res.items())


# --- training ---------------------------------------------------------------------------------------------
def check_processes(train_batch_size: int, world: int):
    """The global batch must split evenly over the processes."""
    if train_batch_size % world:
        raise HparamsError(f"train_batch_size {train_batch_size} is not divisible by the {world} processes: "
                           f"each process takes an equal share of the global batch (choose a multiple of {world}, "
                           f"or another process count)")


def _shard(n: int, rank: int, world: int):
    """[lo, hi) of rank's contiguous share of a global batch of n features."""
    return rank * n // world, (rank + 1) * n // world


class _TaskLoss(paddle.nn.Layer):
    """The layer DataParallel wraps: forward = the task's training loss of a batch (a mean over its
    examples, for every task), times `scale`."""

    def __init__(self, task: Task, model):
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch, scale: float = 1.0):
        loss = self.task.spec.loss(self.model, batch, self.task.options)
        return loss * scale if scale != 1.0 else loss


def check_amp(config: FinetuneConfig, device: str) -> bool:
    """Whether training runs modeling.Linear's bf16 GEMMs (amp: bf16); HparamsError where it cannot."""
    if config.amp != "bf16":
        return False
    if device != "cpu":
        raise HparamsError(f"amp: bf16 in fine-tuning is the CPU's bf16 GEMMs; this run is on {device}")
    from .. import bf16_linear
    refused = bf16_linear.refusal("amp: bf16")
    if refused:
        raise HparamsError(refused)
    return True


def train(task: Task, model, config: FinetuneConfig, trial: int, log_path: Optional[str] = None) -> Dict:
    """Train `model` (every process of the job calls this; only the one given `log_path` logs)."""
    from tqdm import tqdm
    examples = task.get_examples("train")
    features = task.featurize(examples, is_training=True)
    if not features:
        raise DataError(f"{task.data_file('train')}: none of its {len(examples)} examples gave a training "
                        f"feature (task {task.name}; see the warnings above)")
    world, rank = process_env()
    if len(features) < world:
        raise DataError(f"{task.data_file('train')}: {len(features)} training feature(s) for {world} processes")
    bs = config.train_batch_size
    num_steps = max(1, int(len(features) * config.num_train_epochs / bs))
    warmup = int(num_steps * config.warmup_proportion)
    decay = config.layerwise_lr_decay if config.layerwise_lr_decay else None
    optimizer, scheduler = create_optimizer(
        model, config.learning_rate, num_steps, warmup, weight_decay=config.weight_decay_rate,
        layerwise_lr_decay=decay, clip_norm=config.max_grad_norm, corrected_layer_depth=config.corrected_layer_depth)
    step_loss = _TaskLoss(task, model)
    if world > 1:
        from paddle.distributed import fleet
        step_loss = fleet.distributed_model(step_loss)  # the same weights on every rank (broadcast from rank 0)
        paddle.seed(1000 * (config.seed + trial) + rank)  # dropout: other masks on each rank
    rng = np.random.RandomState(config.seed + trial)  # the same order on every rank
    writer = _vdl_writer(log_path)
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    model.train()
    order, pos, t0, seen, running = [], 0, time.time(), 0, []
    window_t0, window_seen = t0, 0
    # rank 0's, shown also when the output goes to a log file (disable=None would hide it there)
    bar = tqdm(range(num_steps), desc=f"{task.name} trial {trial}", mininterval=5, disable=rank != 0)
    try:
        for step in bar:
            if pos + bs > len(order):  # a new pass over the data, reshuffled
                order, pos = rng.permutation(len(features)).tolist(), 0
            batch_ids = order[pos:pos + bs]  # the global batch (fewer than bs when the data set is smaller)
            pos += bs
            lo, hi = _shard(len(batch_ids), rank, world)
            batch = {k: paddle.to_tensor(v) for k, v in task.spec.collate([features[i] for i in batch_ids[lo:hi]]
                                                                          ).items()}
            # DataParallel averages over the ranks: weighted by the share, that is the global batch's mean
            loss = step_loss(batch, (hi - lo) * world / len(batch_ids))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            lr = scheduler.get_lr()
            scheduler.step()
            seen += len(batch_ids)
            window_seen += len(batch_ids)
            running.append(float(loss))
            if (step + 1) % config.log_every == 0 or step + 1 == num_steps:
                mean_loss = float(np.mean(running))
                if world > 1:  # the global batches' loss: the mean of the ranks' (weighted) losses
                    import paddle.distributed as dist
                    t = paddle.to_tensor([mean_loss], dtype="float64")
                    dist.all_reduce(t)
                    mean_loss = float(t.numpy()[0]) / world
                now = time.time()
                rec = {"step": step + 1, "loss": mean_loss, "lr": lr,
                       "examples_per_second": window_seen / (now - window_t0), "elapsed_seconds": now - t0}
                running, window_t0, window_seen = [], now, 0
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                if log:
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                if writer:
                    writer.add_scalar("train/loss", rec["loss"], step + 1)
                    writer.add_scalar("train/lr", lr, step + 1)
    finally:
        if log:
            log.close()
        if writer:
            writer.close()
    elapsed = time.time() - t0
    return {"train_steps": num_steps, "train_features": len(features), "train_seconds": elapsed,
            "train_examples_per_second": seen / elapsed if elapsed else float("nan"), "processes": world}


def _vdl_writer(log_path):
    if not log_path:
        return None
    try:
        from visualdl import LogWriter
    except ImportError:
        return None
    return LogWriter(logdir=os.path.splitext(log_path)[0] + "_vdl")


# --- trials -----------------------------------------------------------------------------------------------
def check_before_training(config: FinetuneConfig, task: Task, model) -> None:
    """What would otherwise fail after training: a max_seq_length beyond the model's position embeddings
    (an index error deep in the first step), and a bad label or field in the dev / test files (read now,
    every label checked, instead of after the training they would throw away)."""
    limit = model.config.max_position_embeddings
    if config.max_seq_length > limit:
        raise HparamsError(f"max_seq_length {config.max_seq_length} is more than the model's "
                           f"max_position_embeddings ({limit}, {resolve_model(config)}); use at most {limit}")
    splits = (["dev"] if config.do_eval else []) + (["test"] if config.do_test else [])
    if config.write_test_outputs and task.has_split("test"):
        splits.append("test")
    for split in dict.fromkeys(splits):
        task.get_examples(split)  # DataError naming the file, line and field


def run_trial(config: FinetuneConfig, task: Task, trial: int, tokenizer_vocab: Optional[str] = None) -> Dict:
    """Train (when do_train), save, evaluate. With several processes all train and evaluate (sharded);
    only rank 0 saves and writes."""
    main_rank = process_env()[1] == 0
    set_seed(config.seed + trial - 1)
    if config.do_train:
        task.get_examples("train")  # a task may learn its label set from the training data (cail)
    path = resolve_model(config)
    if not config.do_train and task.spec.labelled and not config.labels and _fine_tuned_for(task, path):
        # evaluating a fine-tuned model: its own label map (a user's labels need no --labels again)
        model = task.spec.model_class.from_pretrained(path)
        task.set_labels(model.labels)
    else:
        model = task.build_model(path)
    if task.learns_labels and not task.labels:  # labels known only to the fine-tuned model
        task.set_labels(model.labels)
    check_before_training(config, task, model)
    out = {"trial": trial, "seed": config.seed + trial - 1,
           "newly_initialized": model.load_report.newly_initialized if model.load_report else []}
    results_dir = os.path.dirname(config.results_path())
    if main_rank:
        os.makedirs(results_dir, exist_ok=True)
    if config.do_train:
        # the CPU training kernels of paddle_electra.fast_cpu (modeling.py uses them in dygraph training only),
        # and with amp: bf16 the bf16 GEMMs of modeling.Linear
        set_execution_modes(model, fast_cpu_kernels=paddle.get_device() == "cpu",
                            bf16_gemm=check_amp(config, paddle.get_device()))
        out.update(train(task, model, config, trial,
                         os.path.join(results_dir, f"{task.name}_train_trial{trial}.jsonl") if main_rank else None))
        if main_rank and config.save_model and (config.keep_all_models or trial == config.num_trials):
            # the folder says what it was fine-tuned for (the pipeline, predict and export read it)
            model.config.extra[FINETUNING_TASK_KEY] = task.spec.name
            model.config.extra["finetuning"] = finetuning_record(task)
            user_readme = model_card.user_card(config.model_dir(trial))
            path = model.save_pretrained(config.model_dir(trial), vocab_file=tokenizer_vocab)
            out["model_dir"] = path
    splits = (["dev"] if config.do_eval else []) + (["test"] if config.do_test else [])
    for split in splits:
        t0 = time.time()
        ev = evaluate(task, model, split, sharded=True)
        out[split] = ev.scores
        out[f"{split}_eval_seconds"] = time.time() - t0
        if main_rank:
            print(format_results(f"{task.name} {split}", ev.scores), flush=True)
            if task.writes_answers:
                _write_qa_preds(config, split, trial, task.predictions(ev.examples, ev.features, ev.rows))
    if config.write_test_outputs and task.has_split("test"):
        _write_test_outputs(config, task, model, trial, main_rank)
    if out.get("model_dir"):  # the model card, with this trial's scores
        model_card.write(out["model_dir"], finetuned_card(config, task, out), user_readme)
    return out


def _new_eval_results_path(config: FinetuneConfig) -> str:
    """An evaluation's results file named by the time, never one that exists (two runs in one second)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = config.eval_results_path(stamp), 1
    while os.path.exists(path):
        k += 1
        path = config.eval_results_path(f"{stamp}-{k}")
    return path


def _fine_tuned_for(task: Task, path: str) -> bool:
    """Whether the folder `path` holds a model fine-tuned with the task's head (config.json architectures)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
            arch = json.load(f).get("architectures")
    except (OSError, ValueError, AttributeError):
        return False
    return arch == [task.spec.model_class.__name__]


def finetuning_record(task: Task) -> Dict:
    """What config.json of a fine-tuned model records of its fine-tuning: the data set and its files."""
    rec = {"dataset": task.name}
    for split in ("train", "dev", "test"):
        if task.has_split(split):
            rec[f"{split}_file"] = os.path.abspath(task.data_file(split))
    return rec


def finetuned_card(config: FinetuneConfig, task: Task, trial: Dict) -> str:
    rec = finetuning_record(task)
    fields = {"task": f"{task.spec.name} (data set {task.name})", "labels": list(task.labels) or None,
              "base model": config.model_name, "train file": rec.get("train_file"), "dev file": rec.get("dev_file"),
              "test file": rec.get("test_file") if config.do_test else None,
              "trial": f"{trial['trial']} of {config.num_trials} (seed {trial['seed']})",
              "hyperparameters": f"learning_rate {config.learning_rate}, epochs {config.num_train_epochs}, "
                                 f"batch {config.train_batch_size}, max_seq_length {config.max_seq_length}",
              "command": model_card.command_line()}
    scores = {split: trial[split] for split in ("dev", "test") if isinstance(trial.get(split), dict)}
    usage = (f"from paddle_electra import pipeline\n"
             f"predict = pipeline({task.spec.name!r}, this_folder)\n"
             f"# or: paddle-electra predict this_folder --input texts.txt")
    return model_card.render(f"{task.spec.model_class.__name__} fine-tuned on {task.name} (paddle-electra)",
                             fields, usage=usage, scores=scores)


def _write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _write_qa_preds(config, split, trial, preds):
    path = config.qa_preds_file(split)
    _write_json(path, preds)  # the last trial's, under the original's name
    _write_json(path.replace("_preds.json", f"_preds_trial{trial}.json"), preds)


def _write_test_outputs(config, task, model, trial, main_rank=True):
    examples = task.get_examples("test")
    features = task.featurize(examples, is_training=False)
    rows = predict(task, model, make_predictor(model, task, config.eval_backend), features, config.eval_batch_size,
                   sharded=True)
    if not main_rank:
        return
    preds = task.predictions(examples, features, rows)
    if task.writes_answers:
        _write_qa_preds(config, "test", trial, preds)
    else:
        base = os.path.dirname(config.results_path())
        _write_json(os.path.join(base, f"{task.name}_test_predictions_trial{trial}.json"), preds)


def summarize(trials: List[Dict]) -> Dict:
    """max and mean of every metric over the trials (the published tables report both)."""
    summary = {}
    for split in ("dev", "test"):
        keys = [k for k in (trials[0].get(split) or {})]
        for k in keys:
            vals = [t[split][k] for t in trials if split in t]
            summary[f"{split}_{k}"] = {"max": float(np.max(vals)), "mean": float(np.mean(vals)),
                                       "values": [float(v) for v in vals]}
    return summary


def finished_trials(config: FinetuneConfig, results_path: str) -> List[Dict]:
    """The trials a stopped run of the same hparams recorded in its results file (written after each
    trial), up to the first whose saved model is gone; [] when there is no file."""
    from .config import HparamsError, upgrade_hparams
    try:
        with open(results_path, encoding="utf-8") as f:
            recorded = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise HparamsError(f"{results_path}: cannot resume from it ({e})") from None
    want = json.loads(json.dumps(config.to_dict()))
    got = recorded.get("hparams") if isinstance(recorded, dict) else None
    if isinstance(got, dict):  # recorded by the previous release: its key names
        got = upgrade_hparams(got, results_path, warn=False)
        if "amp" not in got and want.get("amp") == "off":  # recorded before the key existed: fp32
            got["amp"] = "off"
    if got != want:
        changed = sorted(k for k in set(want) | set(got or {}) if (got or {}).get(k) != want.get(k))
        raise HparamsError(f"{results_path}: recorded with other hparams ({', '.join(changed)}); --resume needs "
                           f"the same run (or remove --resume to start over)")
    trials = []
    for k, trial in enumerate(recorded.get("trials") or [], start=1):
        if trial.get("trial") != k or (trial.get("model_dir") and not os.path.isdir(trial["model_dir"])):
            break
        trials.append(trial)
    return trials[:config.num_trials]


def run_finetuning(config: FinetuneConfig, resume: bool = False) -> Dict:
    # the entry point has set up the process: runtime.configure_process with config.device, config.num_threads
    from ..tokenizer import ElectraTokenizer
    world, rank = process_env()
    if world > 1:
        if config.do_train:
            check_processes(config.train_batch_size, world)
        init_collective(paddle.get_device())
    path = resolve_model(config)
    tokenizer = ElectraTokenizer.from_pretrained(path if os.path.isdir(path) else None)
    task = get_task(config.task_name, config, tokenizer)
    # a run without training (`paddle-electra evaluate`) writes its own file, never the training run's
    results_path = config.results_path() if config.do_train else _new_eval_results_path(config)
    trials = finished_trials(config, results_path) if resume and config.do_train else []
    if trials and not rank:
        print(f"{task.name}: resuming after trial {len(trials)} of {config.num_trials} ({results_path})", flush=True)
    for trial in range(len(trials) + 1, config.num_trials + 1):
        trials.append(run_trial(config, task, trial, tokenizer.vocab_file))
        if rank:
            continue
        _write_json(results_path, {"task": task.name, "model": config.model_name,
                                   "hparams": config.to_dict(), "trials": trials,
                                   "summary": summarize(trials)})
    summary = summarize(trials)
    if config.num_trials > 1 and not rank:
        for k, v in summary.items():
            print(f"{task.name}: {k}: max {v['max']:.2f} - mean {v['mean']:.2f} over {len(v['values'])} trials")
    if not rank:
        print(f"{task.name}: results written to {results_path}", flush=True)
    return {"trials": trials, "summary": summary, "results_path": results_path}

"""The pretraining run's folder and checkpoint format, read by the trainer (resume), export and the
probes, written by the trainer through save_checkpoint:

  OUTPUT_DIR/checkpoints/checkpoint-<step, 8 digits>/
      model/                  the pair (ElectraForPreTraining.save_pretrained)
      optimizer.safetensors   the optimizer's moments under structured names; AMP O2's fp32
                              master weights under master_weights/<name>
      trainer_state.json      step, scheduler, rng_states (one per process), grad_scaler, the run's
                              record (param_checksums, global_batch_size, seed, world_size,
                              examples_seen, data_dir, data_index_md5, data_ranges, recipe) and the
                              md5 of every other file (file_md5)
  OUTPUT_DIR/metrics.jsonl    one JSON record a line (training, eval_*, probe_*), by step
  OUTPUT_DIR/run_info.json    the run's arguments, recipe, sizes and model configs
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from typing import Dict, List, Tuple

import numpy as np

from ..io import CheckpointError, atomic_dir, load_tensors, save_tensors
from .train_data import INDEX_NAME, file_md5

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "trainer_state.json"
MODEL_SUBDIR = "model"
OPTIMIZER_NAME = "optimizer.safetensors"
MASTER_PREFIX = "master_weights/"  # AMP O2 master weights in optimizer.safetensors
METRICS_NAME = "metrics.jsonl"
RUN_INFO_NAME = "run_info.json"
EVAL_RESULTS_NAME = "eval_results.json"


class RunMismatch(ValueError):
    """A checkpoint that is intact but was written by a run of another structure (not skipped over
    as a corrupt one would be)."""


# --- finding and reading ---------------------------------------------------------------------------
def checkpoint_dirs(output_dir: str) -> List[str]:
    """Complete checkpoints, oldest first (atomic_dir renames a folder only once it is complete)."""
    root = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = re.fullmatch(CHECKPOINT_PREFIX + r"(\d+)", name)
        if m and os.path.exists(os.path.join(root, name, STATE_NAME)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return [p for _, p in sorted(found)]


def find_checkpoint(run_dir: str) -> str:
    """The model/ folder of the newest checkpoint of run `run_dir`, or of `run_dir` when it is one
    checkpoint folder itself."""
    if os.path.exists(os.path.join(run_dir, STATE_NAME)):  # a checkpoint folder itself
        return os.path.join(run_dir, MODEL_SUBDIR)
    found = checkpoint_dirs(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no complete checkpoint (expected {run_dir}/checkpoints/checkpoint-N)")
    return os.path.join(found[-1], MODEL_SUBDIR)


def read_state(path: str) -> Dict:
    """trainer_state.json of checkpoint `path`, checked: errors name the file."""
    f = os.path.join(path, STATE_NAME)
    try:
        with open(f, encoding="utf-8") as fh:
            state = json.load(fh)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{f}: cannot read ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f}: expected a JSON object, got {type(state).__name__}")
    for key, kind in (("step", int), ("scheduler", dict)):
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{f}: field {key!r} is {state.get(key)!r}, expected {kind.__name__}")
    return state


def _files_md5(root: str) -> Dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, root).replace(os.sep, "/")] = file_md5(full)
    return dict(sorted(out.items()))


def verify_files(path: str, state: Dict):
    """The md5 of every file of the checkpoint against the one stored at save time."""
    stored = state.get("file_md5")
    if stored is None:  # written before file digests existed
        return
    got = _files_md5(path)
    got.pop(STATE_NAME, None)
    for name in sorted(set(stored) | set(got)):
        if name not in got:
            raise CheckpointError(f"{os.path.join(path, name)}: missing")
        if stored.get(name) != got[name]:
            raise CheckpointError(f"{os.path.join(path, name)}: md5 {got[name]}, saved as {stored.get(name)} "
                                  f"(changed or corrupt since it was written)")


# --- writing and loading ---------------------------------------------------------------------------
def run_record(param_checksums: List[str], global_batch_size: int, seed: int, world_size: int, step: int,
               data_dir: str, data_ranges: int, recipe: Dict) -> Dict:
    """The run's part of trainer_state.json (what resume checks the run against)."""
    return {"param_checksums": param_checksums, "global_batch_size": global_batch_size, "seed": seed,
            "world_size": world_size, "examples_seen": step * global_batch_size,
            "data_dir": os.path.abspath(data_dir), "data_index_md5": file_md5(os.path.join(data_dir, INDEX_NAME)),
            "data_ranges": data_ranges, "recipe": recipe}


def save_checkpoint(output_dir, step, model, optimizer_state, scheduler, rng_states, extra, keep: int, scaler=None):
    """`optimizer_state`: ElectraAdamW.named_state_dict() (of every parameter); `extra`: run_record's."""
    path = os.path.join(output_dir, "checkpoints", f"{CHECKPOINT_PREFIX}{step:08d}")
    with atomic_dir(path) as tmp:
        model.save_pretrained(os.path.join(tmp, MODEL_SUBDIR))
        state = dict(optimizer_state)
        sched = state.pop("LR_Scheduler", None)
        tensors = {k: v.numpy() for k, v in state.items() if hasattr(v, "numpy")}
        # AMP O2: fp32 master weights, {structured name: tensor}
        tensors.update({MASTER_PREFIX + k: v.numpy() for k, v in state.get("master_weights", {}).items()})
        save_tensors(tensors, os.path.join(tmp, OPTIMIZER_NAME))
        record = {"step": step, "scheduler": sched or scheduler.state_dict(), "rng_states": rng_states,
                  "grad_scaler": scaler_state_to_json(scaler), **extra, "file_md5": _files_md5(tmp)}
        with open(os.path.join(tmp, STATE_NAME), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    for old in checkpoint_dirs(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    # temporaries that a killed save left beside the checkpoints (atomic_dir's ".<name>.tmp-*")
    root = os.path.dirname(path)
    for name in os.listdir(root):
        if name.startswith("." + CHECKPOINT_PREFIX):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    return path


def load_checkpoint(path, model, optimizer, scheduler, scaler=None, checksum=None) -> Dict:
    """Load checkpoint `path` into model, optimizer, scheduler (and GradScaler). Every file is checked
    against its stored md5 first, and the loaded parameters against the stored parameter checksum
    (`checksum()` computes it), so a corrupt checkpoint raises CheckpointError naming the file."""
    import paddle
    from ..modeling import ElectraForPreTraining
    state = read_state(path)
    verify_files(path, state)
    saved = ElectraForPreTraining.from_pretrained(os.path.join(path, MODEL_SUBDIR))
    mine = getattr(model, "embedding_sharing", "original")
    if saved.embedding_sharing != mine:
        raise RunMismatch(f"{path} was trained with --embedding-sharing {saved.embedding_sharing}, this run has "
                          f"{mine}: give the same, or a new --output-dir (--init-from a checkpoint's model/ "
                          f"folder starts gdes from an original pair)")
    model.set_state_dict(saved.state_dict())
    sums = state.get("param_checksums")
    if checksum is not None and sums:
        got = checksum()
        if got != sums[0]:
            raise CheckpointError(f"{os.path.join(path, MODEL_SUBDIR)}: the loaded parameters' md5 is {got}, the "
                                  f"run's was {sums[0]} at step {state['step']} (corrupt weights)")
    tensors = load_tensors(os.path.join(path, OPTIMIZER_NAME))
    opt_state = {k: paddle.to_tensor(v) for k, v in tensors.items() if not k.startswith(MASTER_PREFIX)}
    master = {k[len(MASTER_PREFIX):]: paddle.to_tensor(v) for k, v in tensors.items() if k.startswith(MASTER_PREFIX)}
    if master:
        opt_state["master_weights"] = master
    opt_state["LR_Scheduler"] = state["scheduler"]
    try:
        optimizer.set_named_state_dict(opt_state)
    except ValueError as e:
        raise CheckpointError(f"{os.path.join(path, OPTIMIZER_NAME)}: {e}") from None
    scheduler.set_state_dict(state["scheduler"])
    if scaler is not None:
        if not state.get("grad_scaler"):
            raise CheckpointError(f"{os.path.join(path, STATE_NAME)}: no grad_scaler state, but this run uses fp16 "
                                  f"loss scaling (the checkpoint was written without --amp fp16)")
        scaler.load_state_dict(scaler_state_from_json(state["grad_scaler"]))
    return state


def scaler_state_to_json(scaler) -> Dict:
    """GradScaler.state_dict() as JSON ({} without a scaler, or for a disabled one)."""
    if scaler is None:
        return {}
    return {k: (np.asarray(v).reshape(-1).tolist() if k == "scale" else v) for k, v in scaler.state_dict().items()}


def scaler_state_from_json(state: Dict) -> Dict:
    return {k: (np.asarray(v, np.float32) if k == "scale" else v) for k, v in state.items()}


# --- resuming ----------------------------------------------------------------------------------------
def check_fits(state: Dict, path: str, *, global_batch_size: int, seed: int, data_dir: str, data_ranges: int,
               allow_data_change: bool, recipe: Dict) -> Tuple[int, List[str]]:
    """Whether checkpoint `path` (its `state`) continues this run: the global batch and seed must be
    the same (else the data position would not carry over), the data and --data-ranges too unless
    `allow_data_change`. Returns (the example ranges the checkpoint read, warnings to show)."""
    if state.get("global_batch_size") != global_batch_size or state.get("seed") != seed:
        raise CheckpointError(
            f"{path} was written with global batch {state.get('global_batch_size')} and seed {state.get('seed')}; "
            f"this run has {global_batch_size} and {seed}: the data position would not carry over. Use the same "
            f"--train-batch-size x processes x accumulation and --seed, or a new --output-dir")
    step = int(state["step"])
    ranges = int(state.get("data_ranges", 1))  # checkpoints from before data ranges read one permutation
    md5 = file_md5(os.path.join(data_dir, INDEX_NAME))
    changes = []
    if state.get("data_index_md5") not in (None, md5):
        changes.append(f"it trained on {state.get('data_dir')} (index.json md5 {state['data_index_md5']}), "
                       f"--data-dir {data_dir} has index.json md5 {md5}")
    if data_ranges and data_ranges != ranges:
        changes.append(f"it read the data in {ranges} example ranges, --data-ranges is {data_ranges}")
    if changes and not allow_data_change:
        raise CheckpointError(f"{path}: {'; '.join(changes)}: step {step} would not continue the same data "
                              f"stream. Give the same data, or --allow-data-change to go on from step {step} "
                              f"with this data")
    warnings = [f"--allow-data-change: {'; '.join(changes)}"] if changes else []
    saved_recipe = state.get("recipe") or {}
    changed = [f"{k} {saved_recipe[k]} -> {v}" for k, v in recipe.items() if k in saved_recipe and saved_recipe[k] != v]
    if changed:
        warnings.append(f"{path} was trained with another recipe; going on with this run's: {'; '.join(changed)}")
    return ranges, warnings


def truncate_metrics(output_dir: str, step: int):
    """Drop the records of metrics.jsonl after `step` (a run killed after its last checkpoint logged
    them) and torn lines (a kill during a write), so that each step appears once after a restart."""
    f = os.path.join(output_dir, METRICS_NAME)
    if not os.path.exists(f):
        return
    keep, dropped = [], []
    with open(f, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec_step = rec.get("step", 0) if isinstance(rec, dict) else None
            except json.JSONDecodeError:
                rec_step = None
            if rec_step is None:
                dropped.append(n)
            elif rec_step <= step:
                keep.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        print(f"WARNING: {f}: dropped unreadable line(s) {dropped} (a write cut off by a kill?)",
              file=sys.stderr, flush=True)
    tmp = f + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(keep)
    os.replace(tmp, f)

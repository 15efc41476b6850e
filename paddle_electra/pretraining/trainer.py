"""The pretraining loop on paddle.distributed.fleet (collective mode), with atomic, resumable
checkpoints. `pretrain/run_pretraining.py` is a thin wrapper around `add_arguments` / `run`.

One process:      python pretrain/run_pretraining.py --data-dir D --model chinese-electra-small --output-dir O
N processes:      python -m paddle.distributed.launch --nproc_per_node N pretrain/run_pretraining.py ...
Several machines: add --nnodes M --master IP0:PORT --rank R --host THIS_IP to the launcher on every
                  machine, with --output-dir a folder they share (docs/pretraining.md, "Many machines").
Resume: the newest intact checkpoint (files and parameters checked against their stored md5s);
SIGTERM saves one at the step's end and exits with 143; --step-timeout ends a job a lost host hangs.

Determinism: the example order, the masking and the generator's sampling noise are pure functions of
(seed, step) (see data.ExampleOrder and masking), dropout draws from Paddle's generator, whose state
each checkpoint stores per process; a run killed and resumed therefore continues exactly as the
uninterrupted run would (on one CPU process; GPU kernels need not be deterministic).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from typing import Dict, List, Optional

import numpy as np

from ..io import CheckpointError, atomic_dir, load_tensors, save_tensors
from ..config import ElectraConfig, generator_config_for, get_variant
from ..distributed import init_collective, process_env
from ..paddle_compat import rng_state_from_json, rng_state_to_json
from . import fixed_eval
from .checkpoint import CHECKPOINT_PREFIX, MODEL_SUBDIR, STATE_NAME, checkpoint_dirs, read_state
from .data import DataError, ExampleOrder, PretrainingData, file_md5
from .masking import gumbel_noise, mask_batch, max_predictions
from .metrics import masked_auc, summarize
from .objective import RTDConfig, rtd_forward

OPTIMIZER_NAME = "optimizer.safetensors"
METRICS_NAME = "metrics.jsonl"
MASTER_PREFIX = "master_weights/"  # AMP O2 master weights in optimizer.safetensors
PREEMPTED_EXIT = 128 + signal.SIGTERM  # stopped by SIGTERM after saving: run the same command to resume
LOST_PEER_EXIT = 75  # --step-timeout passed with no step finished


def add_arguments(p: argparse.ArgumentParser):
    g = p.add_argument_group("data and model")
    g.add_argument("--data-dir", required=True, help="folder written by build_pretraining_dataset.py")
    g.add_argument("--eval-data-dir", help="held-out folder (same format) evaluated at --eval-steps and at the end")
    g.add_argument("--model", help="registered variant whose shapes to train from scratch, e.g. chinese-electra-small")
    g.add_argument("--discriminator-config", help="config.json of the discriminator (instead of --model)")
    g.add_argument("--generator-config", help="config.json of the generator (default: hidden H/4, same depth)")
    g.add_argument("--generator-hidden-fraction", type=float, default=0.25,
                   help="generator hidden size / discriminator hidden size when no generator config is given")
    g.add_argument("--init-from", help="a pretraining dir (converted release or export) to continue from, generator included")
    g.add_argument("--output-dir", required=True)
    g = p.add_argument_group("optimization (defaults: the original's)")
    g.add_argument("--train-batch-size", type=int, default=128, help="examples per process per micro-step")
    g.add_argument("--gradient-accumulation-steps", type=int, default=1,
                   help="micro-steps per optimizer step (gradient merge)")
    g.add_argument("--learning-rate", type=float, default=5e-4)
    g.add_argument("--max-steps", type=int, default=1000000)
    g.add_argument("--warmup-steps", type=int, default=10000)
    g.add_argument("--warmup-ratio", type=float, default=None,
                   help="warm up over this share of --max-steps (rounded up) instead of --warmup-steps, e.g. 0.1 "
                        "(the original: 10,000 of 1M steps = 0.01); default: --warmup-steps")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--lr-decay-power", type=float, default=1.0)
    g.add_argument("--mask-prob", type=float, default=0.15)
    g.add_argument("--gen-weight", type=float, default=1.0)
    g.add_argument("--disc-weight", type=float, default=50.0)
    g.add_argument("--temperature", type=float, default=1.0,
                   help="the generator's sampling temperature (with --temperature-start: the value it anneals to)")
    g.add_argument("--temperature-start", type=float, default=None,
                   help="anneal the sampling temperature linearly from this value at step 0 to --temperature at "
                        "--temperature-anneal-steps, then keep it (Fast-ELECTRA's descending schedule, e.g. 2 -> 1); "
                        "default: a constant --temperature, as the original")
    g.add_argument("--temperature-anneal-steps", type=int, default=None,
                   help="with --temperature-start: the step at which the anneal ends (default: --max-steps)")
    g.add_argument("--generator-lr-multiplier", type=float, default=1.0,
                   help="the generator's learning rate / the discriminator's: parameters that only the MLM loss "
                        "trains (the generator's layers and head; with --embedding-sharing gdes also the embedding "
                        "tables it owns) get lr x this (Dong et al., ICML 2023: with Adam the loss weights do not set "
                        "the generator's pace). Default 1: one rate for all, as the original")
    g.add_argument("--embedding-sharing", choices=["original", "gdes"], default="original",
                   help="original: generator and discriminator share the whole embeddings block (both losses train "
                        "it); gdes: gradient-disentangled sharing (DeBERTa-v3): the discriminator's tables are the "
                        "generator's with stop-gradient plus its own delta (zero at the start), with its own "
                        "LayerNorm, so the RTD loss does not pull the generator's embeddings")
    g.add_argument("--seed", type=int, default=42)
    g = p.add_argument_group("run")
    g.add_argument("--save-steps", type=int, default=1000)
    g.add_argument("--save-total-limit", type=int, default=3, help="keep the newest K checkpoints")
    g.add_argument("--logging-steps", type=int, default=100)
    g.add_argument("--eval-steps", type=int, default=0, help="evaluate on --eval-data-dir every N steps (0: only at the end)")
    g.add_argument("--eval-batches", type=int, default=50)
    g.add_argument("--fixed-eval-dir",
                   help="where the fixed corrupted held-out set lives (default OUTPUT_DIR/fixed_eval): drawn there at "
                        "the first evaluation unless it exists; give another run's to score runs on the same tokens")
    g.add_argument("--fixed-eval-generator",
                   help="a pretraining dir, checkpoint or run whose generator draws the fixed set's replacements "
                        "(default: this run's generator at its first evaluation)")
    g.add_argument("--no-fixed-eval", action="store_true",
                   help="no fixed-corruption metrics (fixed_gen_*, fixed_unigram_*) at the evaluations")
    g.add_argument("--max-minutes", type=float, default=0,
                   help="stop (with a checkpoint) after this much wall time; 0 = no limit")
    g.add_argument("--step-timeout", type=float, default=600,
                   help="with several processes: exit (code 75) when no step finishes for this many seconds, "
                        "e.g. because a host is gone and a collective waits for it; 0 = wait forever")
    g.add_argument("--data-ranges", type=int, default=0,
                   help="cut the examples into this many contiguous ranges, each read by its own processes "
                        "(default: the checkpoint's when resuming, else one per process, so that no process reads "
                        "the whole corpus); the data order depends on it, not on the number of processes")
    g.add_argument("--allow-data-change", action="store_true",
                   help="resume although the data (index.json md5) or --data-ranges differ from the checkpoint's")
    g.add_argument("--device", help="cpu, gpu, gpu:1 (default: GPU when present)")
    g.add_argument("--num-threads", type=int, help="CPU threads per process (default: cores / processes)")
    g.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off",
                   help="mixed precision (DistributedStrategy.amp); fp16 uses dynamic loss scaling (GPU)")
    g.add_argument("--amp-level", choices=["O1", "O2"], default="O1",
                   help="with --amp: O1 casts per op; O2 keeps the model in half precision with fp32 master weights "
                        "in the optimizer (paddle.amp.decorate, master_weight=True; checkpoints hold fp32) (GPU)")
    g.add_argument("--sharding-stage", type=int, choices=[0, 1, 2], default=0,
                   help="shard over the processes: 1 = the optimizer states (fleet hybrid sharding, "
                        "DygraphShardingOptimizer; runs on CPU too), 2 = optimizer states and gradients "
                        "(paddle.distributed.sharding.group_sharded_parallel, level os_g; GPU). Checkpoints "
                        "hold the whole optimizer state, so a run resumes with or without sharding")
    g.add_argument("--recompute", action="store_true",
                   help="recompute encoder layers in the backward pass (DistributedStrategy.recompute)")
    g.add_argument("--fast-cpu-kernels", choices=["auto", "on", "off"], default="auto",
                   help="GEMV bias gradients and transpose-free attention (paddle_electra.fast_cpu), compiled "
                        "GELU/LayerNorm/dropout (paddle_electra.cpu_kernels); auto: on for CPU")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bar (metrics still go to stdout)")
    g.add_argument("--eval-only", action="store_true",
                   help="only evaluate (--init-from or the newest checkpoint) on --eval-data-dir; writes "
                        "OUTPUT_DIR/eval_results.json")


# --- set-up --------------------------------------------------------------------------------------
def build_configs(args):
    if args.init_from:
        return None, None
    if bool(args.model) == bool(args.discriminator_config):
        raise ValueError("give exactly one of --model, --discriminator-config or --init-from")
    if args.model:
        v = get_variant(args.model)
        disc, gen = v.discriminator, v.generator
    else:
        disc = ElectraConfig.from_json_file(args.discriminator_config)
        gen = None
    if args.generator_config:
        gen = ElectraConfig.from_json_file(args.generator_config)
    elif gen is None:
        gen = generator_config_for(disc, int(round(disc.hidden_size * args.generator_hidden_fraction)))
    return disc, gen


def warmup_steps(args) -> int:
    """--warmup-steps, or ceil(--warmup-ratio x --max-steps) when a ratio is given."""
    ratio = getattr(args, "warmup_ratio", None)
    if ratio is None:
        return args.warmup_steps
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--warmup-ratio must be in [0, 1], got {ratio}")
    return int(math.ceil(ratio * args.max_steps))


def temperature_schedule(args):
    """step -> the sampling temperature of the optimizer step that starts at `step` (the lr schedule's
    convention): --temperature throughout, or linear from --temperature-start at step 0 to
    --temperature at --temperature-anneal-steps (default --max-steps) and constant after."""
    end, start = args.temperature, getattr(args, "temperature_start", None)
    steps = getattr(args, "temperature_anneal_steps", None)
    for name, v in (("--temperature", end), ("--temperature-start", start)):
        if v is not None and not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if start is None:
        if steps is not None:
            raise ValueError("--temperature-anneal-steps needs --temperature-start")
        return lambda step: end
    steps = args.max_steps if steps is None else steps
    if steps <= 0:
        raise ValueError(f"--temperature-anneal-steps must be positive, got {steps}")
    return lambda step: end + (start - end) * max(0.0, 1.0 - step / steps)


def _make_strategy(args, world: int):
    from paddle.distributed import fleet
    s = fleet.DistributedStrategy()
    if args.sharding_stage == 1:  # every process one shard of the optimizer states; no other parallelism
        s.hybrid_configs = {"dp_degree": 1, "mp_degree": 1, "pp_degree": 1, "sharding_degree": world}
    # These record the run's choices in the strategy, as the launcher's users expect; in dygraph,
    # fleet applies none of them itself, so the loop below implements each one (auto_cast,
    # recompute of the encoder layers, accumulation with no_sync); sharding (hybrid_configs) it does.
    s.amp = args.amp != "off"
    s.recompute = args.recompute
    if args.gradient_accumulation_steps > 1:
        s.gradient_merge = True
        s.gradient_merge_configs = {"k_steps": args.gradient_accumulation_steps, "avg": False}
    return s


class RTDModule:
    """Builds the nn.Layer that DataParallel wraps: forward = the whole RTD objective."""

    @staticmethod
    def make(pretraining_model, cfg: RTDConfig):
        import paddle.nn as nn

        class RTD(nn.Layer):
            def __init__(self):
                super().__init__()
                self.model = pretraining_model

            def forward(self, batch, gumbel, denominators):
                return rtd_forward(self.model, batch, gumbel, cfg, denominators)

        return RTD()


# --- checkpoints ---------------------------------------------------------------------------------
def _files_md5(root: str) -> Dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            out[os.path.relpath(full, root).replace(os.sep, "/")] = file_md5(full)
    return dict(sorted(out.items()))


def save_checkpoint(output_dir, step, model, optimizer_state, scheduler, rng_states, extra, keep: int, scaler=None):
    """`optimizer_state`: ElectraAdamW.named_state_dict() (of every parameter)."""
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


class RunMismatch(ValueError):
    """A checkpoint that is intact but was written by a run of another structure (not skipped over
    as a corrupt one would be)."""


def scaler_state_to_json(scaler) -> Dict:
    """GradScaler.state_dict() as JSON ({} without a scaler, or for a disabled one)."""
    if scaler is None:
        return {}
    return {k: (np.asarray(v).reshape(-1).tolist() if k == "scale" else v) for k, v in scaler.state_dict().items()}


def scaler_state_from_json(state: Dict) -> Dict:
    return {k: (np.asarray(v, np.float32) if k == "scale" else v) for k, v in state.items()}


# --- the loop ------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, args):
        import paddle
        from paddle.distributed import fleet
        from ..modeling import ElectraForPreTraining, set_execution_modes
        from ..optimization import create_optimizer
        from ..runtime import resolve_device

        self.args = args
        self.world, self.rank = process_env()
        self.device = resolve_device(args.device)  # the process is set up by the entry point (runtime.configure_process)
        if args.amp != "off" and self.device == "cpu":
            raise ValueError(f"--amp {args.amp} needs a GPU: Paddle {paddle.__version__} has no bfloat16/float16 "
                             f"matmul kernel on CPU in dygraph")
        if args.amp_level == "O2" and args.amp == "off":
            raise ValueError("--amp-level O2 needs --amp fp16 or bf16")
        if args.sharding_stage == 2 and self.device == "cpu":
            raise ValueError(f"--sharding-stage 2 needs GPUs: Paddle {paddle.__version__}'s group_sharded_parallel "
                             f"runs on gpu, xpu and custom devices only (--sharding-stage 1 runs on CPU)")
        if args.sharding_stage and self.world == 1:
            raise ValueError("--sharding-stage needs several processes (paddle.distributed.launch)")
        if self.world > 1:
            init_collective(self.device, _make_strategy(args, self.world))
        self.is_main = self.rank == 0

        self.data = PretrainingData(args.data_dir)
        self.eval_data = PretrainingData(args.eval_data_dir) if args.eval_data_dir else None
        # the fixed corrupted held-out set (fixed_eval): rank 0 draws, stores and scores it
        self.fixed, self.fixed_dir = None, None
        if self.eval_data is not None and not getattr(args, "no_fixed_eval", False):
            self.fixed_dir = getattr(args, "fixed_eval_dir", None) or os.path.join(args.output_dir, fixed_eval.FIXED_DIR)
            if self.is_main:  # a stored set that does not fit stops the run now, not at its first evaluation
                self.fixed = fixed_eval.load_or_none(self.fixed_dir, self.eval_data)

        paddle.seed(args.seed)  # the same initial weights on every process
        sharing = getattr(args, "embedding_sharing", "original")
        if args.init_from:
            self.model = ElectraForPreTraining.from_pretrained(args.init_from, embedding_sharing=sharing)
        else:
            disc, gen = build_configs(args)
            self.model = ElectraForPreTraining(disc, gen, embedding_sharing=sharing)
        self._check_vocab()
        set_execution_modes(self.model, recompute=args.recompute, fast_cpu_kernels=args.fast_cpu_kernels == "on" or (
            args.fast_cpu_kernels == "auto" and self.device == "cpu"))
        self.temperature_at = temperature_schedule(args)
        # the RTD module reads self.cfg at every forward: train_step sets its temperature for the step
        self.cfg = RTDConfig(args.gen_weight, args.disc_weight, self.temperature_at(0))
        self.n_slots = max_predictions(args.mask_prob, self.data.max_seq_length)
        gen_lr = getattr(args, "generator_lr_multiplier", 1.0)
        if not gen_lr > 0:
            raise ValueError(f"--generator-lr-multiplier must be positive, got {gen_lr}")
        self.optimizer, self.scheduler = create_optimizer(
            self.model, args.learning_rate, args.max_steps, warmup_steps(args), weight_decay=args.weight_decay,
            lr_decay_power=args.lr_decay_power,
            lr_multiplier=None if gen_lr == 1.0 else (lambda name: gen_lr if name.startswith("generator.") else 1.0))
        if args.amp != "off" and args.amp_level == "O2":  # half-precision model, fp32 master weights
            paddle.amp.decorate(models=self.model, optimizers=self.optimizer, level="O2", master_weight=True,
                                dtype="bfloat16" if args.amp == "bf16" else "float16", save_dtype="float32")
        self.rtd = RTDModule.make(self.model, self.cfg)
        self.step = 0
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if args.amp == "fp16" else None
        # self.optimizer holds the state (named_state_dict); self.stepper is what steps (a sharding wrapper)
        self.rtd_dp, self.stepper = self.rtd, self.optimizer
        if args.sharding_stage == 2:
            from paddle.distributed.sharding import group_sharded_parallel
            self.rtd_dp, self.stepper, self.scaler = group_sharded_parallel(
                self.rtd, self.optimizer, level="os_g", scaler=self.scaler)
        elif self.world > 1:
            self.rtd_dp = fleet.distributed_model(self.rtd)
            if args.sharding_stage == 1:
                self.stepper = fleet.distributed_optimizer(self.optimizer)
        paddle.seed(args.seed + 1 + self.rank)  # dropout: different masks on each process
        ranges = self._resume()
        self.order = ExampleOrder(len(self.data), args.seed, ranges)
        lo, hi = self.order.rank_range(args.train_batch_size, self.rank, self.world)
        names = self.data.shard_names(lo, hi)
        print(f"rank {self.rank}/{self.world} reads examples {lo}..{hi - 1} of {len(self.data)} "
              f"({len(names)} of {len(self.data.index['shards'])} shards: {names[0]}..{names[-1]}; "
              f"{ranges} example range{'s' if ranges > 1 else ''})", flush=True)

    def _check_vocab(self):
        V = self.model.config.vocab_size
        if self.data.index["vocab_size"] != V:
            raise DataError(f"{self.args.data_dir} was built with a vocab of {self.data.index['vocab_size']} "
                            f"tokens but the model has vocab_size {V}")

    def _resume(self) -> int:
        """Load the newest intact checkpoint (falling back past corrupt ones, saying why); check that
        it fits this run; return the number of example ranges the data order uses."""
        args = self.args
        found = checkpoint_dirs(args.output_dir)
        state, path, problems = None, None, []
        for candidate in reversed(found):
            try:
                state = load_checkpoint(candidate, self.model, self.optimizer, self.scheduler, self.scaler,
                                        checksum=self.param_checksum)
                path = candidate
                break
            except RunMismatch:
                raise
            except (CheckpointError, DataError, OSError, KeyError, ValueError) as e:
                problems.append(f"{candidate}: {e}")
                if self.is_main:
                    print(f"WARNING: checkpoint {candidate} is not intact ({e}); trying the one before it",
                          file=sys.stderr, flush=True)
        if found and state is None:
            raise CheckpointError(f"no intact checkpoint in {os.path.join(args.output_dir, 'checkpoints')}:\n  " +
                                  "\n  ".join(problems) + "\nremove them to start again, or use a new --output-dir")
        step = int(state["step"]) if state else 0
        self._agree_on_step(step)
        if state is None:
            return args.data_ranges or self.world
        gb = args.train_batch_size * self.world * args.gradient_accumulation_steps
        if state.get("global_batch_size") != gb or state.get("seed") != args.seed:
            raise CheckpointError(
                f"{path} was written with global batch {state.get('global_batch_size')} and seed {state.get('seed')}; "
                f"this run has {gb} and {args.seed}: the data position would not carry over. Use the same "
                f"--train-batch-size x processes x accumulation and --seed, or a new --output-dir")
        ranges = int(state.get("data_ranges", 1))  # checkpoints from before data ranges read one permutation
        md5 = file_md5(os.path.join(args.data_dir, "index.json"))
        changes = []
        if state.get("data_index_md5") not in (None, md5):
            changes.append(f"it trained on {state.get('data_dir')} (index.json md5 {state['data_index_md5']}), "
                           f"--data-dir {args.data_dir} has index.json md5 {md5}")
        if args.data_ranges and args.data_ranges != ranges:
            changes.append(f"it read the data in {ranges} example ranges, --data-ranges is {args.data_ranges}")
        if changes and not args.allow_data_change:
            raise CheckpointError(f"{path}: {'; '.join(changes)}: step {step} would not continue the same data "
                                  f"stream. Give the same data, or --allow-data-change to go on from step {step} "
                                  f"with this data")
        if changes and self.is_main:
            print(f"WARNING: --allow-data-change: {'; '.join(changes)}", file=sys.stderr, flush=True)
        saved_recipe, recipe = state.get("recipe") or {}, self.recipe()
        changed = [f"{k} {saved_recipe[k]} -> {v}" for k, v in recipe.items() if k in saved_recipe and saved_recipe[k] != v]
        if changed and self.is_main:
            print(f"WARNING: {path} was trained with another recipe; going on with this run's: {'; '.join(changed)}",
                  file=sys.stderr, flush=True)
        self.step = step
        rngs = state.get("rng_states") or []
        if self.rank < len(rngs):
            rng_state_from_json(rngs[self.rank])
        if self.is_main:
            print(f"resumed from {path} at step {self.step}", flush=True)
        return args.data_ranges or ranges

    def recipe(self) -> Dict:
        """The training recipe's settings (the literature's options included), as this run uses them:
        written to run_info.json and to every checkpoint, compared on resume."""
        a = self.args
        return {"learning_rate": a.learning_rate, "max_steps": a.max_steps, "warmup_steps": warmup_steps(a),
                "warmup_ratio": getattr(a, "warmup_ratio", None), "mask_prob": a.mask_prob,
                "gen_weight": a.gen_weight, "disc_weight": a.disc_weight, "temperature": a.temperature,
                "temperature_start": getattr(a, "temperature_start", None),
                "temperature_anneal_steps": getattr(a, "temperature_anneal_steps", None),
                "generator_lr_multiplier": getattr(a, "generator_lr_multiplier", 1.0),
                "embedding_sharing": self.model.embedding_sharing,
                "gradient_accumulation_steps": a.gradient_accumulation_steps}

    def _agree_on_step(self, step: int):
        """Every process must resume from the same step: with several hosts --output-dir must be one
        folder that all of them see."""
        if self.world == 1:
            return
        import paddle.distributed as dist
        steps = []
        dist.all_gather_object(steps, step)
        if len(set(steps)) != 1:
            raise CheckpointError(f"the processes found different newest checkpoints in {self.args.output_dir} "
                                  f"(steps by rank: {steps}): --output-dir must be a folder shared by all hosts")

    def _truncate_metrics(self, step):
        """Drop the records after `step` (a run killed after its last checkpoint logged them) and torn
        lines (a kill during a write), so that each step appears once after a restart."""
        f = os.path.join(self.args.output_dir, METRICS_NAME)
        if not (self.is_main and os.path.exists(f)):
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

    # --- one batch on the host -------------------------------------------------------------------
    def host_batch(self, micro_index: int):
        idx, pos = self.order.indices(micro_index, self.args.train_batch_size, self.rank, self.world)
        return self.make_batch(self.data, idx, pos, self.args.seed)

    def make_batch(self, data, idx, pos, seed):
        """Examples `idx` of `data`, masked and with gumbel noise seeded by their stream positions `pos`."""
        ids, mask, seg = data.batch(idx)
        m = mask_batch(ids, mask, pos, data.special_ids, seed, self.args.mask_prob, self.n_slots)
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": seg, **m}
        noise = gumbel_noise(pos, self.n_slots, self.model.config.vocab_size, seed)
        return batch, noise

    @staticmethod
    def to_tensors(batch, noise):
        import paddle
        return {k: paddle.to_tensor(v) for k, v in batch.items()}, paddle.to_tensor(noise)

    def _amp_ctx(self):
        import paddle
        if self.args.amp == "off":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(dtype="bfloat16" if self.args.amp == "bf16" else "float16", level=self.args.amp_level)

    def train_step(self):
        """One optimizer step (k micro-steps). Returns the summed stats tensor and, per micro-step,
        the disc probabilities, labels and input masks (for the AUC)."""
        import paddle
        import paddle.distributed as dist
        k = self.args.gradient_accumulation_steps
        self.cfg.temperature = self.temperature_at(self.step)
        micro = [self.host_batch(self.step * k + i) for i in range(k)]
        counts = np.array([sum(float(b["masked_lm_weights"].sum()) for b, _ in micro),
                           sum(float(b["attention_mask"].sum()) for b, _ in micro)], np.float32)
        if self.world > 1:
            t = paddle.to_tensor(counts)
            dist.all_reduce(t)
            counts = t.numpy()
        denominators = (float(counts[0]) / self.world, float(counts[1]) / self.world)
        stats_sum, probs, labels, reals = None, [], [], []
        for i, (b, noise) in enumerate(micro):
            batch, noise = self.to_tensors(b, noise)
            # no_sync: DataParallel's all-reduce only on the last micro-step (sharding reduces in step())
            no_sync = getattr(self.rtd_dp, "no_sync", None)
            sync = contextlib.nullcontext() if (no_sync is None or i == k - 1) else no_sync()
            with sync:
                with self._amp_ctx():
                    loss, stats, p, l = self.rtd_dp(batch, noise, denominators)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            stats_sum = stats if stats_sum is None else stats_sum + stats
            probs.append(p)
            labels.append(l)
            reals.append(batch["attention_mask"])
        if self.scaler is not None:
            self.scaler.step(self.stepper)
            self.scaler.update()
        else:
            self.stepper.step()
        self.stepper.clear_grad(set_to_zero=False)
        self.scheduler.step()
        self.step += 1
        return stats_sum, probs, labels, reals

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate(self, data=None, num_batches=None, batch_size=None) -> Dict[str, float]:
        """MLM and disc metrics on held-out data: its first num_batches x batch_size examples in order,
        dropout off, masks and samples seeded by the example index (the same every time). Every
        process evaluates the same examples. The generator samples at the temperature of the next
        training step."""
        import paddle
        data = data or self.eval_data
        self.cfg.temperature = self.temperature_at(self.step)
        bs = batch_size or self.args.train_batch_size
        n = min(len(data), (num_batches or self.args.eval_batches) * bs)
        self.model.eval()
        total, probs, labels, reals = None, [], [], []
        try:
            with paddle.no_grad():
                for start in range(0, n, bs):
                    idx = np.arange(start, min(n, start + bs))
                    b, noise = self.make_batch(data, idx, idx, seed=0)
                    batch, noise_t = self.to_tensors(b, noise)
                    with self._amp_ctx():
                        _, stats, p, l = rtd_forward(self.model, batch, noise_t, self.cfg)
                    total = stats if total is None else total + stats
                    probs.append(p.numpy().ravel()), labels.append(l.numpy().ravel())
                    reals.append(b["attention_mask"].ravel())
        finally:
            self.model.train()
        out = summarize(total.numpy(), self.cfg.gen_weight, self.cfg.disc_weight)
        out["disc_auc"] = masked_auc(np.concatenate(probs), np.concatenate(labels), np.concatenate(reals))
        out["examples"] = n
        return out

    # --- the loop ---------------------------------------------------------------------------------
    def train(self):
        import paddle
        import paddle.distributed as dist
        from tqdm import tqdm
        args = self.args
        os.makedirs(args.output_dir, exist_ok=True)
        gb = args.train_batch_size * self.world * args.gradient_accumulation_steps
        L = self.data.max_seq_length
        writer = None
        if self.is_main:
            self._truncate_metrics(self.step)
            self._write_run_info(gb)
            try:
                from visualdl import LogWriter
                writer = LogWriter(logdir=os.path.join(args.output_dir, "vdl"))
            except ImportError:  # visualdl is a core requirement; keep running without it if absent
                print("visualdl not installed: no VisualDL logs", file=sys.stderr)
        bar = tqdm(total=args.max_steps, initial=self.step, disable=not self.is_main or args.no_progress,
                   desc="pretraining", dynamic_ncols=True)
        t_start = time.time()
        window_stats, window_probs, window_labels, window_reals = None, [], [], []
        window_t0, window_steps = time.time(), 0
        stop_reason = "max_steps"
        self.preempted = False
        with _on_sigterm() as signalled, _Watchdog(args.step_timeout if self.world > 1 else 0, self.rank) as dog:
            while self.step < args.max_steps:
                lr = self.optimizer.get_lr()
                stats, probs, labels, reals = self.train_step()
                temperature = self.cfg.temperature
                window_stats = stats if window_stats is None else window_stats + stats
                window_probs += probs
                window_labels += labels
                window_reals += reals
                window_steps += 1
                bar.update(1)
                last = self.step >= args.max_steps
                stop = self._stop_request(t_start, signalled)
                if self.step % args.logging_steps == 0 or last or stop:
                    s = window_stats
                    if self.world > 1:
                        dist.all_reduce(s)
                    elapsed = time.time() - window_t0
                    m = summarize(s.numpy(), self.cfg.gen_weight, self.cfg.disc_weight)
                    m["disc_auc"] = masked_auc(paddle.concat(window_probs).numpy(),
                                               paddle.concat(window_labels).numpy(), paddle.concat(window_reals).numpy())
                    m.update(step=self.step, lr=lr, temperature=temperature, tokens_per_second=window_steps * gb * L / elapsed,
                             examples_seen=self.step * gb, elapsed_minutes=(time.time() - t_start) / 60)
                    if self.is_main:
                        self._log(m, writer, bar)
                    window_stats, window_probs, window_labels, window_reals = None, [], [], []
                    window_t0, window_steps = time.time(), 0
                if self.eval_data is not None and args.eval_steps and self.step % args.eval_steps == 0 and not last \
                        and not stop:
                    self._eval_and_log(writer, bar)
                if self.step % args.save_steps == 0 or last or stop:
                    self.save(gb)
                dog.beat()
                if stop == "sigterm":
                    self.preempted = True
                    stop_reason = "SIGTERM: checkpoint saved, the same command resumes"
                    break
                if stop == "max_minutes" and not last:
                    stop_reason = f"max_minutes {args.max_minutes}"
                    break
        bar.close()
        if self.eval_data is not None and not self.preempted:
            self._eval_and_log(writer, None, final=True)
        if writer is not None:
            writer.close()
        if self.is_main:
            print(f"stopped at step {self.step} ({stop_reason})", flush=True)
        return self.step

    def _stop_request(self, t_start, signalled) -> Optional[str]:
        """"sigterm", "max_minutes" or None, the same on every process (each step, when there are
        several, the flags are all-reduced, so that a SIGTERM to one host stops all at the same step)."""
        flags = [float(bool(signalled)),
                 float(bool(self.args.max_minutes) and (time.time() - t_start) / 60 >= self.args.max_minutes)]
        if self.world > 1:
            import paddle
            import paddle.distributed as dist
            t = paddle.to_tensor(flags)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = t.numpy().tolist()
        return "sigterm" if flags[0] else "max_minutes" if flags[1] else None

    def save(self, gb):
        import paddle.distributed as dist
        rngs, sums = [rng_state_to_json()], [self.param_checksum()]
        opt_state = self.optimizer_state()
        if self.world > 1:
            gathered, gathered_sums = [], []
            dist.all_gather_object(gathered, rngs[0])
            dist.all_gather_object(gathered_sums, sums[0])
            rngs, sums = gathered, gathered_sums
        if self.is_main:
            if len(set(sums)) != 1:
                print(f"WARNING: parameters differ between processes: checksums {sums}", file=sys.stderr)
            extra = {"param_checksums": sums, "global_batch_size": gb, "seed": self.args.seed, "world_size": self.world,
                     "examples_seen": self.step * gb, "data_dir": os.path.abspath(self.args.data_dir),
                     "data_index_md5": file_md5(os.path.join(self.args.data_dir, "index.json")),
                     "data_ranges": self.order.ranges, "recipe": self.recipe()}
            save_checkpoint(self.args.output_dir, self.step, self.model, opt_state, self.scheduler, rngs,
                            extra, self.args.save_total_limit, scaler=self.scaler)
        if self.world > 1:
            dist.barrier()

    def optimizer_state(self) -> Dict:
        """The optimizer's named state; with sharding, each process holds the state of its own
        parameters only, and rank 0 gets the union (the same state an unsharded run saves)."""
        state = self.optimizer.named_state_dict()
        if not self.args.sharding_stage:
            return state
        import paddle
        import paddle.distributed as dist
        mine = ({k: v.numpy() for k, v in state.items() if hasattr(v, "numpy")},
                {k: v.numpy() for k, v in state.get("master_weights", {}).items()})
        parts = []
        dist.all_gather_object(parts, mine)
        merged = {k: paddle.to_tensor(v) for tensors, _ in parts for k, v in tensors.items()}
        n_own, n_all = (sum(k.endswith("_moment1_0") for k in d) for d in (mine[0], merged))
        print(f"rank {self.rank}: holds the optimizer state of {n_own} of {n_all} parameters "
              f"(sharding stage {self.args.sharding_stage})", flush=True)
        master = {k: paddle.to_tensor(v) for _, m in parts for k, v in m.items()}
        if master:
            merged["master_weights"] = master
        return merged

    def param_checksum(self) -> str:
        """md5 of every parameter's bytes: equal on all processes when data parallelism is right."""
        return _params_md5(self.model)

    def fixed_metrics(self) -> Dict:
        """The discriminator on the fixed corrupted held-out set (fixed_eval), drawn now if it is not
        stored yet; {} on ranks other than 0 or with --no-fixed-eval."""
        if self.fixed_dir is None or not self.is_main:
            return {}
        if self.fixed is None:
            bs = self.args.train_batch_size
            source = getattr(self.args, "fixed_eval_generator", None)
            if source:
                gen, where = fixed_eval.frozen_generator(source)
                if gen.config.vocab_size != self.model.config.vocab_size:
                    raise ValueError(f"--fixed-eval-generator {source}: vocab_size {gen.config.vocab_size}, the run's "
                                     f"is {self.model.config.vocab_size}")
                info = {"source": where}
            else:
                gen, info = self.model.generator, {"source": os.path.abspath(self.args.output_dir), "step": self.step}
            info["generator_md5"] = _params_md5(gen)
            self.fixed = fixed_eval.build(self.eval_data, self.data, gen, self.args.eval_batches * bs,
                                          self.args.mask_prob, bs, info, self._amp_ctx)
            self.fixed.save(self.fixed_dir)
            print(f"fixed held-out set: {self.fixed.examples} examples corrupted once (generator: {info['source']}"
                  f"{', step %d' % info['step'] if 'step' in info else ''}; unigram), stored in {self.fixed_dir}",
                  flush=True)
        m = self.fixed.score(self.model.discriminator, self.args.train_batch_size, self._amp_ctx)
        m["fixed_set_id"] = self.fixed.set_id
        return m

    def _eval_and_log(self, writer, bar, final=False):
        m = self.evaluate()
        m.update(self.fixed_metrics())
        m["step"] = self.step
        if self.is_main:
            rec = {("eval_" + k if k != "step" else k): v for k, v in m.items()}
            rec["final"] = final
            self._append_metrics(rec)
            if writer is not None:
                for k, v in m.items():
                    if k != "step" and isinstance(v, float) and not math.isnan(v):
                        writer.add_scalar(f"eval/{k}", v, self.step)
            (bar.write if bar is not None else print)(
                "eval " + " ".join(f"{k}={_fmt(v)}" for k, v in m.items()))
        if final and self.is_main:
            with open(os.path.join(self.args.output_dir, "eval_results.json"), "w", encoding="utf-8") as f:
                json.dump(m, f, indent=1)

    def _log(self, m, writer, bar):
        self._append_metrics(m)
        if writer is not None:
            for k, v in m.items():
                if k != "step" and isinstance(v, (int, float)) and not math.isnan(v):
                    writer.add_scalar(f"train/{k}", v, self.step)
        bar.set_postfix(loss=f"{m['loss']:.3f}", mlm_acc=f"{m['mlm_accuracy']:.3f}",
                        disc_auc=f"{m['disc_auc']:.3f}", tok_s=f"{m['tokens_per_second']:.0f}")
        bar.write(" ".join(f"{k}={_fmt(v)}" for k, v in m.items()))

    def _append_metrics(self, rec):
        with open(os.path.join(self.args.output_dir, METRICS_NAME), "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _write_run_info(self, gb):
        info = {"args": vars(self.args), "recipe": self.recipe(), "world_size": self.world, "global_batch_size": gb,
                "device": self.device, "discriminator": self.model.config.to_dict(),
                "generator": self.model.generator_config.to_dict(), "data": self.data.index.get("summary")}
        with open(os.path.join(self.args.output_dir, "run_info.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1, default=str)


@contextlib.contextmanager
def _on_sigterm():
    """Within: SIGTERM (preemption, or the launcher stopping the job) is noted in the yielded list
    instead of killing the process, so that the loop saves a checkpoint and stops at the step's end."""
    got: List[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Watchdog:
    """Ends the process (exit code LOST_PEER_EXIT) when no step finished for `timeout` seconds: a
    collective waiting for a process or host that is gone would otherwise wait forever (gloo has no
    timeout on CPU). `timeout` 0 = off."""

    def __init__(self, timeout: float, rank: int):
        self.timeout, self.rank = timeout, rank
        self._last = time.monotonic()
        self._done = threading.Event()

    def beat(self):
        self._last = time.monotonic()

    def __enter__(self):
        if self.timeout > 0:
            threading.Thread(target=self._watch, name="step-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._done.set()

    def _watch(self):
        while not self._done.wait(min(5.0, self.timeout / 4)):
            idle = time.monotonic() - self._last
            if idle > self.timeout:
                print(f"rank {self.rank}: no step finished for {idle:.0f} s (--step-timeout {self.timeout:g}): a "
                      f"process or host of the job is lost or stuck; exiting. The same command resumes from the "
                      f"newest checkpoint.", file=sys.stderr, flush=True)
                os._exit(LOST_PEER_EXIT)


def _params_md5(layer) -> str:
    import hashlib
    h = hashlib.md5()
    for name, p in sorted(layer.state_dict().items()):
        h.update(name.encode())
        h.update(p.numpy().tobytes())
    return h.hexdigest()


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run(args):
    if args.eval_only and not args.eval_data_dir:
        raise ValueError("--eval-only needs --eval-data-dir")
    trainer = Trainer(args)
    if args.eval_only:
        m = trainer.evaluate()
        m.update(trainer.fixed_metrics())
        m["step"] = trainer.step
        if trainer.is_main:
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, "eval_results.json"), "w", encoding="utf-8") as f:
                json.dump(m, f, indent=1)
            print("eval " + " ".join(f"{k}={_fmt(v)}" for k, v in m.items()), flush=True)
        return 0
    trainer.train()
    return PREEMPTED_EXIT if trainer.preempted else 0


def main(argv=None):
    p = argparse.ArgumentParser(description="ELECTRA replaced-token-detection pretraining")
    add_arguments(p)
    return run(p.parse_args(argv))

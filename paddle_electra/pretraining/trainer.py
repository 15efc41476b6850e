"""The pretraining loop on paddle.distributed.fleet (collective mode), with atomic, resumable
checkpoints. `paddle-electra pretrain` (and `pretrain/run_pretraining.py`, its wrapper) fills a
PretrainConfig (pretraining.config) from its flags and calls `run`.

One process:      python pretrain/run_pretraining.py --data-dir D --model chinese-electra-small --output-dir O
N processes:      python -m paddle.distributed.launch --nproc_per_node N pretrain/run_pretraining.py ...
Several machines: add --nnodes M --master IP0:PORT --rank R --host THIS_IP to the launcher on every
                  machine, with --output-dir a folder they share (docs/pretraining.md, "Many machines").
Resume: the newest intact checkpoint (files and parameters checked against their stored md5s;
pretraining.checkpoint holds the format); SIGTERM saves one at the step's end and exits with 143;
--step-timeout ends a job a lost host hangs (pretraining.control).

Determinism: the example order, the masking and the generator's sampling noise are pure functions of
(seed, step) (see train_data.ExampleOrder and masking), dropout draws from Paddle's generator, whose
state each checkpoint stores per process; a run killed and resumed therefore continues exactly as the
uninterrupted run would (on one CPU process; GPU kernels need not be deterministic).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from typing import Dict, Optional

import numpy as np

from ..distributed import init_collective, process_env
from ..io import CheckpointError
from ..paddle_compat import rng_state_from_json, rng_state_to_json
from . import fixed_eval, parallel
from .checkpoint import RunMismatch, check_fits, checkpoint_dirs, load_checkpoint, run_record, save_checkpoint
from .config import PretrainConfig, model_configs, recipe, temperature_schedule, warmup_steps
from .control import PREEMPTED_EXIT, Watchdog, on_sigterm, stop_request
from .masking import gumbel_noise, mask_batch, max_predictions
from .metrics import masked_auc, summarize
from .objective import RTDConfig, RTDModule, rtd_forward
from .run_log import RunLog, eval_line, write_eval_results
from .train_data import DataError, ExampleOrder, PretrainingData


class Trainer:
    """A run of `config`: set up (model, optimizer, the processes, resumed from the newest checkpoint)
    on construction; `train()` runs the loop, `evaluate()` scores held-out data. `command_args`: the
    command's parsed arguments as run_info.json records them (default: the config's fields)."""

    def __init__(self, config: PretrainConfig, command_args: Optional[Dict] = None):
        import paddle
        self.config = config
        self.command_args = command_args
        self.world, self.rank = process_env()
        self.is_main = self.rank == 0
        self._start_processes()
        self._open_data()
        self._build_model()
        self._build_optimizer()
        self._wrap_for_processes()
        paddle.seed(config.seed + 1 + self.rank)  # dropout: different masks on each process
        ranges = self._resume()
        self.order = ExampleOrder(len(self.data), config.seed, ranges)
        lo, hi = self.order.rank_range(config.train_batch_size, self.rank, self.world)
        names = self.data.shard_names(lo, hi)
        print(f"rank {self.rank}/{self.world} reads examples {lo}..{hi - 1} of {len(self.data)} "
              f"({len(names)} of {len(self.data.index['shards'])} shards: {names[0]}..{names[-1]}; "
              f"{ranges} example range{'s' if ranges > 1 else ''})", flush=True)

    @property
    def global_batch_size(self) -> int:
        return self.config.train_batch_size * self.world * self.config.gradient_accumulation_steps

    # --- set-up, in order ---------------------------------------------------------------------------
    def _start_processes(self):
        """The device (the process itself is set up by the entry point: runtime.configure_process),
        the options it cannot run refused, and fleet started when there are several processes."""
        import paddle
        from ..runtime import resolve_device
        c = self.config
        self.device = resolve_device(c.device)
        # on CPU, --amp bf16 is the bf16 GEMMs of modeling.Linear (paddle_electra/bf16_linear.py)
        self.cpu_bf16_gemm = c.amp == "bf16" and self.device == "cpu"
        if c.amp == "fp16" and self.device == "cpu":
            raise ValueError(f"--amp fp16 needs a GPU: Paddle {paddle.__version__} has no float16 matmul kernel on "
                             f"CPU in dygraph")
        if self.cpu_bf16_gemm:
            if c.amp_level == "O2":
                raise ValueError("--amp-level O2 needs a GPU; on CPU, --amp bf16 (O1) runs the Linear GEMMs in "
                                 "bf16 with fp32 weights")
            from .. import bf16_linear
            refused = bf16_linear.refusal("--amp bf16 on CPU")
            if refused:
                raise ValueError(refused)
        if c.amp_level == "O2" and c.amp == "off":
            raise ValueError("--amp-level O2 needs --amp fp16 or bf16")
        if c.sharding_stage == 2 and self.device == "cpu":
            raise ValueError(f"--sharding-stage 2 needs GPUs: Paddle {paddle.__version__}'s group_sharded_parallel "
                             f"runs on gpu, xpu and custom devices only (--sharding-stage 1 runs on CPU)")
        if c.sharding_stage and self.world == 1:
            raise ValueError("--sharding-stage needs several processes (paddle.distributed.launch)")
        if self.world > 1:
            init_collective(self.device, parallel.strategy(c, self.world))

    def _open_data(self):
        c = self.config
        self.data = PretrainingData(c.data_dir)
        self.eval_data = PretrainingData(c.eval_data_dir) if c.eval_data_dir else None
        # the fixed corrupted held-out set (fixed_eval): rank 0 draws, stores and scores it
        self.fixed, self.fixed_dir = None, None
        if self.eval_data is not None and not c.no_fixed_eval:
            self.fixed_dir = c.fixed_eval_dir or os.path.join(c.output_dir, fixed_eval.FIXED_DIR)
            if self.is_main:  # a stored set that does not fit stops the run now, not at its first evaluation
                self.fixed = fixed_eval.load_or_none(self.fixed_dir, self.eval_data)

    def _build_model(self):
        import paddle
        from ..modeling import ElectraForPreTraining, set_execution_modes
        c = self.config
        paddle.seed(c.seed)  # the same initial weights on every process
        if c.init_from:
            self.model = ElectraForPreTraining.from_pretrained(c.init_from, embedding_sharing=c.embedding_sharing)
        else:
            disc, gen = model_configs(c)
            self.model = ElectraForPreTraining(disc, gen, embedding_sharing=c.embedding_sharing)
        V = self.model.config.vocab_size
        if self.data.index["vocab_size"] != V:
            raise DataError(f"{c.data_dir} was built with a vocab of {self.data.index['vocab_size']} "
                            f"tokens but the model has vocab_size {V}")
        set_execution_modes(self.model, recompute=c.recompute, fast_cpu_kernels=c.fast_cpu_kernels == "on" or (
            c.fast_cpu_kernels == "auto" and self.device == "cpu"), bf16_gemm=self.cpu_bf16_gemm)
        self.temperature_at = temperature_schedule(c)
        # the RTD module reads self.rtd_config at every forward: train_step sets its temperature for the step
        self.rtd_config = RTDConfig(c.gen_weight, c.disc_weight, self.temperature_at(0))
        self.n_slots = max_predictions(c.mask_prob, self.data.max_seq_length)

    def _build_optimizer(self):
        import paddle
        from ..optimization import create_optimizer
        c = self.config
        gen_lr = c.generator_lr_multiplier
        if not gen_lr > 0:
            raise ValueError(f"--generator-lr-multiplier must be positive, got {gen_lr}")
        self.optimizer, self.scheduler = create_optimizer(
            self.model, c.learning_rate, c.max_steps, warmup_steps(c), weight_decay=c.weight_decay,
            lr_decay_power=c.lr_decay_power,
            lr_multiplier=None if gen_lr == 1.0 else (lambda name: gen_lr if name.startswith("generator.") else 1.0))
        if c.amp != "off" and c.amp_level == "O2":  # half-precision model, fp32 master weights
            paddle.amp.decorate(models=self.model, optimizers=self.optimizer, level="O2", master_weight=True,
                                dtype="bfloat16" if c.amp == "bf16" else "float16", save_dtype="float32")
        self.step = 0
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15) if c.amp == "fp16" else None

    def _wrap_for_processes(self):
        """self.rtd_dp: what the step calls (the RTD module, wrapped for data parallelism or sharding);
        self.stepper: what steps (the optimizer or its sharding wrapper; self.optimizer holds the state)."""
        self.rtd = RTDModule(self.model, self.rtd_config)
        self.rtd_dp, self.stepper, self.scaler = parallel.wrap(self.rtd, self.optimizer, self.scaler,
                                                               self.config.sharding_stage, self.world)

    def _resume(self) -> int:
        """Load the newest intact checkpoint (falling back past corrupt ones, saying why); check that
        it fits this run; return the number of example ranges the data order uses."""
        c = self.config
        found = checkpoint_dirs(c.output_dir)
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
            raise CheckpointError(f"no intact checkpoint in {os.path.join(c.output_dir, 'checkpoints')}:\n  " +
                                  "\n  ".join(problems) + "\nremove them to start again, or use a new --output-dir")
        step = int(state["step"]) if state else 0
        self._agree_on_step(step)
        if state is None:
            return c.data_ranges or self.world
        ranges, warnings = check_fits(state, path, global_batch_size=self.global_batch_size, seed=c.seed,
                                      data_dir=c.data_dir, data_ranges=c.data_ranges,
                                      allow_data_change=c.allow_data_change, recipe=self.recipe())
        for w in warnings if self.is_main else []:
            print(f"WARNING: {w}", file=sys.stderr, flush=True)
        self.step = step
        rngs = state.get("rng_states") or []
        if self.rank < len(rngs):
            rng_state_from_json(rngs[self.rank])
        if self.is_main:
            print(f"resumed from {path} at step {self.step}", flush=True)
        return c.data_ranges or ranges

    def _agree_on_step(self, step: int):
        """Every process must resume from the same step: with several hosts --output-dir must be one
        folder that all of them see."""
        if self.world == 1:
            return
        import paddle.distributed as dist
        steps = []
        dist.all_gather_object(steps, step)
        if len(set(steps)) != 1:
            raise CheckpointError(f"the processes found different newest checkpoints in {self.config.output_dir} "
                                  f"(steps by rank: {steps}): --output-dir must be a folder shared by all hosts")

    def recipe(self) -> Dict:
        """The training recipe as this run uses it (config.recipe): run_info.json, every checkpoint."""
        return recipe(self.config, self.model.embedding_sharing)

    # --- one batch on the host -------------------------------------------------------------------
    def host_batch(self, micro_index: int):
        idx, pos = self.order.indices(micro_index, self.config.train_batch_size, self.rank, self.world)
        return self.make_batch(self.data, idx, pos, self.config.seed)

    def make_batch(self, data, idx, pos, seed):
        """Examples `idx` of `data`, masked and with gumbel noise seeded by their stream positions `pos`."""
        ids, mask, seg = data.batch(idx)
        m = mask_batch(ids, mask, pos, data.special_ids, seed, self.config.mask_prob, self.n_slots)
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": seg, **m}
        noise = gumbel_noise(pos, self.n_slots, self.model.config.vocab_size, seed)
        return batch, noise

    @staticmethod
    def to_tensors(batch, noise):
        import paddle
        return {k: paddle.to_tensor(v) for k, v in batch.items()}, paddle.to_tensor(noise)

    def _amp_ctx(self):
        import paddle
        c = self.config
        if c.amp == "off" or self.cpu_bf16_gemm:  # CPU bf16: the Linear layers' mode, no auto_cast
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(dtype="bfloat16" if c.amp == "bf16" else "float16", level=c.amp_level)

    # --- one optimizer step --------------------------------------------------------------------------
    def train_step(self):
        """One optimizer step (k micro-steps). Returns the summed stats tensor and, per micro-step,
        the disc probabilities, labels and input masks (for the AUC)."""
        import paddle
        import paddle.distributed as dist
        k = self.config.gradient_accumulation_steps
        self.rtd_config.temperature = self.temperature_at(self.step)
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
        self.rtd_config.temperature = self.temperature_at(self.step)
        bs = batch_size or self.config.train_batch_size
        n = min(len(data), (num_batches or self.config.eval_batches) * bs)
        self.model.eval()
        total, probs, labels, reals = None, [], [], []
        try:
            with paddle.no_grad():
                for start in range(0, n, bs):
                    idx = np.arange(start, min(n, start + bs))
                    b, noise = self.make_batch(data, idx, idx, seed=0)
                    batch, noise_t = self.to_tensors(b, noise)
                    with self._amp_ctx():
                        _, stats, p, l = rtd_forward(self.model, batch, noise_t, self.rtd_config)
                    total = stats if total is None else total + stats
                    probs.append(p.numpy().ravel()), labels.append(l.numpy().ravel())
                    reals.append(b["attention_mask"].ravel())
        finally:
            self.model.train()
        out = summarize(total.numpy(), self.rtd_config.gen_weight, self.rtd_config.disc_weight)
        out["disc_auc"] = masked_auc(np.concatenate(probs), np.concatenate(labels), np.concatenate(reals))
        out["examples"] = n
        return out

    def fixed_metrics(self) -> Dict:
        """The discriminator on the fixed corrupted held-out set (fixed_eval), drawn now if it is not
        stored yet; {} on ranks other than 0 or with --no-fixed-eval."""
        c = self.config
        if self.fixed_dir is None or not self.is_main:
            return {}
        if self.fixed is None:
            bs = c.train_batch_size
            source = c.fixed_eval_generator
            if source:
                gen, where = fixed_eval.frozen_generator(source)
                if gen.config.vocab_size != self.model.config.vocab_size:
                    raise ValueError(f"--fixed-eval-generator {source}: vocab_size {gen.config.vocab_size}, the run's "
                                     f"is {self.model.config.vocab_size}")
                info = {"source": where}
            else:
                gen, info = self.model.generator, {"source": os.path.abspath(c.output_dir), "step": self.step}
            info["generator_md5"] = parallel.params_md5(gen)
            self.fixed = fixed_eval.build(self.eval_data, self.data, gen, c.eval_batches * bs,
                                          c.mask_prob, bs, info, self._amp_ctx)
            self.fixed.save(self.fixed_dir)
            print(f"fixed held-out set: {self.fixed.examples} examples corrupted once (generator: {info['source']}"
                  f"{', step %d' % info['step'] if 'step' in info else ''}; unigram), stored in {self.fixed_dir}",
                  flush=True)
        m = self.fixed.score(self.model.discriminator, c.train_batch_size, self._amp_ctx)
        m["fixed_set_id"] = self.fixed.set_id
        return m

    def held_out_metrics(self) -> Dict:
        """evaluate() and fixed_metrics() at this step."""
        m = self.evaluate()
        m.update(self.fixed_metrics())
        m["step"] = self.step
        return m

    # --- the loop ---------------------------------------------------------------------------------
    def train(self) -> int:
        """Steps until --max-steps, SIGTERM or --max-minutes: each step logged every --logging-steps,
        evaluated every --eval-steps, saved every --save-steps and at the stop; then the final
        evaluation. Sets self.preempted (SIGTERM). Returns the step reached."""
        c = self.config
        log = RunLog(c.output_dir, self.is_main)
        log.start(self.step, c.max_steps, progress=not c.no_progress, run_info=self.run_info)
        t_start = time.time()
        window = _Window()
        stop_reason = "max_steps"
        self.preempted = False
        with on_sigterm() as signalled, Watchdog(c.step_timeout if self.world > 1 else 0, self.rank) as dog:
            while self.step < c.max_steps:
                lr = self.optimizer.get_lr()
                window.add(*self.train_step())
                temperature = self.rtd_config.temperature
                log.step_done()
                last = self.step >= c.max_steps
                stop = stop_request(signalled, t_start, c.max_minutes, self.world)
                if self.step % c.logging_steps == 0 or last or stop:
                    log.train(self._train_metrics(window, lr, temperature, t_start), self.step)
                    window = _Window()
                if self.eval_data is not None and c.eval_steps and self.step % c.eval_steps == 0 and not last \
                        and not stop:
                    log.eval(self.held_out_metrics(), self.step)
                if self.step % c.save_steps == 0 or last or stop:
                    self.save()
                dog.beat()
                if stop == "sigterm":
                    self.preempted = True
                    stop_reason = "SIGTERM: checkpoint saved, the same command resumes"
                    break
                if stop == "max_minutes" and not last:
                    stop_reason = f"max_minutes {c.max_minutes}"
                    break
        log.close_bar()
        if self.eval_data is not None and not self.preempted:
            log.eval(self.held_out_metrics(), self.step, final=True)
        log.close()
        if self.is_main:
            print(f"stopped at step {self.step} ({stop_reason})", flush=True)
        return self.step

    def _train_metrics(self, window: "_Window", lr: float, temperature: float, t_start: float) -> Dict:
        """The training record of the steps since the last one (summed over the processes)."""
        import paddle
        import paddle.distributed as dist
        s = window.stats
        if self.world > 1:
            dist.all_reduce(s)
        elapsed = time.time() - window.t0
        gb = self.global_batch_size
        m = summarize(s.numpy(), self.rtd_config.gen_weight, self.rtd_config.disc_weight)
        m["disc_auc"] = masked_auc(paddle.concat(window.probs).numpy(), paddle.concat(window.labels).numpy(),
                                   paddle.concat(window.reals).numpy())
        m.update(step=self.step, lr=lr, temperature=temperature,
                 tokens_per_second=window.steps * gb * self.data.max_seq_length / elapsed,
                 examples_seen=self.step * gb, elapsed_minutes=(time.time() - t_start) / 60)
        return m

    def run_info(self) -> Dict:
        """run_info.json."""
        return {"args": self.command_args if self.command_args is not None else dataclasses.asdict(self.config),
                "recipe": self.recipe(), "world_size": self.world, "global_batch_size": self.global_batch_size,
                "device": self.device, "discriminator": self.model.config.to_dict(),
                "generator": self.model.generator_config.to_dict(), "data": self.data.index.get("summary")}

    # --- checkpoints ---------------------------------------------------------------------------------
    def save(self):
        """A checkpoint of this step (rank 0 writes it with every process's rng state)."""
        import paddle.distributed as dist
        c = self.config
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
            extra = run_record(sums, self.global_batch_size, c.seed, self.world, self.step, c.data_dir,
                               self.order.ranges, self.recipe())
            save_checkpoint(c.output_dir, self.step, self.model, opt_state, self.scheduler, rngs,
                            extra, c.save_total_limit, scaler=self.scaler)
        if self.world > 1:
            dist.barrier()

    def optimizer_state(self) -> Dict:
        """The optimizer's named state; with sharding, each process holds the state of its own
        parameters only, and rank 0 gets the union (the same state an unsharded run saves)."""
        state = self.optimizer.named_state_dict()
        if not self.config.sharding_stage:
            return state
        return parallel.gather_optimizer_state(state, self.rank, self.config.sharding_stage)

    def param_checksum(self) -> str:
        """md5 of every parameter's bytes: equal on all processes when data parallelism is right."""
        return parallel.params_md5(self.model)


class _Window:
    """The training steps since the last training record: their summed stats and, per micro-step,
    the disc probabilities, labels and input masks (for the AUC)."""

    def __init__(self):
        self.stats, self.probs, self.labels, self.reals = None, [], [], []
        self.t0, self.steps = time.time(), 0

    def add(self, stats, probs, labels, reals):
        self.stats = stats if self.stats is None else self.stats + stats
        self.probs += probs
        self.labels += labels
        self.reals += reals
        self.steps += 1


def run(config: PretrainConfig, command_args: Optional[Dict] = None) -> int:
    """`paddle-electra pretrain`: train (exit code PREEMPTED_EXIT when SIGTERM stopped it), or with
    --eval-only evaluate into OUTPUT_DIR/eval_results.json."""
    if config.eval_only and not config.eval_data_dir:
        raise ValueError("--eval-only needs --eval-data-dir")
    trainer = Trainer(config, command_args)
    if config.eval_only:
        m = trainer.held_out_metrics()
        if trainer.is_main:
            os.makedirs(config.output_dir, exist_ok=True)
            write_eval_results(config.output_dir, m)
            print(eval_line(m), flush=True)
        return 0
    trainer.train()
    return PREEMPTED_EXIT if trainer.preempted else 0

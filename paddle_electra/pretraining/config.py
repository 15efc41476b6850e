"""The settings of a pretraining run: `PretrainConfig`, one typed field per flag of `paddle-electra
pretrain`, with its default and help in one place. The CLI builds its parser from the fields
(`add_arguments`) and fills a config from what it parsed (`PretrainConfig.from_args`); the trainer
reads only the config. In Python: `trainer.run(PretrainConfig(data_dir=..., output_dir=..., ...))`.

The flags, their defaults and the order of the fields are part of a run's record (run_info.json
"args"): a resumed run must see the same ones.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from ..config import ElectraConfig, generator_config_for, get_variant

DATA_AND_MODEL = "data and model"
OPTIMIZATION = "optimization (defaults: the original's)"
RUN = "run"


def _flag(default, help: Optional[str] = None, *, group: str, choices=None, required: bool = False):
    """A field that is also the flag --<name with dashes> of argument group `group`."""
    return field(default=default, metadata={"help": help, "group": group, "choices": choices, "required": required})


@dataclass
class PretrainConfig:
    # --- data and model ---
    data_dir: str = _flag(None, "folder written by build_pretraining_dataset.py", group=DATA_AND_MODEL, required=True)
    eval_data_dir: Optional[str] = _flag(
        None, "held-out folder (same format) evaluated at --eval-steps and at the end", group=DATA_AND_MODEL)
    model: Optional[str] = _flag(
        None, "registered variant whose shapes to train from scratch, e.g. chinese-electra-small", group=DATA_AND_MODEL)
    discriminator_config: Optional[str] = _flag(
        None, "config.json of the discriminator (instead of --model)", group=DATA_AND_MODEL)
    generator_config: Optional[str] = _flag(
        None, "config.json of the generator (default: hidden H/4, same depth)", group=DATA_AND_MODEL)
    generator_hidden_fraction: float = _flag(
        0.25, "generator hidden size / discriminator hidden size when no generator config is given",
        group=DATA_AND_MODEL)
    init_from: Optional[str] = _flag(
        None, "a pretraining dir (converted release or export) to continue from, generator included",
        group=DATA_AND_MODEL)
    output_dir: str = _flag(None, group=DATA_AND_MODEL, required=True)

    # --- optimization ---
    train_batch_size: int = _flag(128, "examples per process per micro-step", group=OPTIMIZATION)
    gradient_accumulation_steps: int = _flag(1, "micro-steps per optimizer step (gradient merge)", group=OPTIMIZATION)
    learning_rate: float = _flag(5e-4, group=OPTIMIZATION)
    max_steps: int = _flag(1000000, group=OPTIMIZATION)
    warmup_steps: int = _flag(10000, group=OPTIMIZATION)
    warmup_ratio: Optional[float] = _flag(
        None, "warm up over this share of --max-steps (rounded up) instead of --warmup-steps, e.g. 0.1 "
              "(the original: 10,000 of 1M steps = 0.01); default: --warmup-steps", group=OPTIMIZATION)
    weight_decay: float = _flag(0.01, group=OPTIMIZATION)
    lr_decay_power: float = _flag(1.0, group=OPTIMIZATION)
    mask_prob: float = _flag(0.15, group=OPTIMIZATION)
    gen_weight: float = _flag(1.0, group=OPTIMIZATION)
    disc_weight: float = _flag(50.0, group=OPTIMIZATION)
    temperature: float = _flag(
        1.0, "the generator's sampling temperature (with --temperature-start: the value it anneals to)",
        group=OPTIMIZATION)
    temperature_start: Optional[float] = _flag(
        None, "anneal the sampling temperature linearly from this value at step 0 to --temperature at "
              "--temperature-anneal-steps, then keep it (Fast-ELECTRA's descending schedule, e.g. 2 -> 1); "
              "default: a constant --temperature, as the original", group=OPTIMIZATION)
    temperature_anneal_steps: Optional[int] = _flag(
        None, "with --temperature-start: the step at which the anneal ends (default: --max-steps)", group=OPTIMIZATION)
    generator_lr_multiplier: float = _flag(
        1.0, "the generator's learning rate / the discriminator's: parameters that only the MLM loss "
             "trains (the generator's layers and head; with --embedding-sharing gdes also the embedding "
             "tables it owns) get lr x this (Dong et al., ICML 2023: with Adam the loss weights do not set "
             "the generator's pace). Default 1: one rate for all, as the original", group=OPTIMIZATION)
    embedding_sharing: str = _flag(
        "original", "original: generator and discriminator share the whole embeddings block (both losses train "
                    "it); gdes: gradient-disentangled sharing (DeBERTa-v3): the discriminator's tables are the "
                    "generator's with stop-gradient plus its own delta (zero at the start), with its own "
                    "LayerNorm, so the RTD loss does not pull the generator's embeddings",
        group=OPTIMIZATION, choices=["original", "gdes"])
    seed: int = _flag(42, group=OPTIMIZATION)

    # --- run ---
    save_steps: int = _flag(1000, group=RUN)
    save_total_limit: int = _flag(3, "keep the newest K checkpoints", group=RUN)
    logging_steps: int = _flag(100, group=RUN)
    eval_steps: int = _flag(0, "evaluate on --eval-data-dir every N steps (0: only at the end)", group=RUN)
    eval_batches: int = _flag(50, group=RUN)
    fixed_eval_dir: Optional[str] = _flag(
        None, "where the fixed corrupted held-out set lives (default OUTPUT_DIR/fixed_eval): drawn there at "
              "the first evaluation unless it exists; give another run's to score runs on the same tokens", group=RUN)
    fixed_eval_generator: Optional[str] = _flag(
        None, "a pretraining dir, checkpoint or run whose generator draws the fixed set's replacements "
              "(default: this run's generator at its first evaluation)", group=RUN)
    no_fixed_eval: bool = _flag(
        False, "no fixed-corruption metrics (fixed_gen_*, fixed_unigram_*) at the evaluations", group=RUN)
    max_minutes: float = _flag(0, "stop (with a checkpoint) after this much wall time; 0 = no limit", group=RUN)
    step_timeout: float = _flag(
        600, "with several processes: exit (code 75) when no step finishes for this many seconds, "
             "e.g. because a host is gone and a collective waits for it; 0 = wait forever", group=RUN)
    data_ranges: int = _flag(
        0, "cut the examples into this many contiguous ranges, each read by its own processes "
           "(default: the checkpoint's when resuming, else one per process, so that no process reads "
           "the whole corpus); the data order depends on it, not on the number of processes", group=RUN)
    allow_data_change: bool = _flag(
        False, "resume although the data (index.json md5) or --data-ranges differ from the checkpoint's", group=RUN)
    device: Optional[str] = _flag(None, "cpu, gpu, gpu:1 (default: GPU when present)", group=RUN)
    num_threads: Optional[int] = _flag(None, "CPU threads per process (default: cores / processes)", group=RUN)
    amp: str = _flag("off", "mixed precision (DistributedStrategy.amp); fp16 uses dynamic loss scaling (GPU); "
                            "on CPU, bf16 runs the Linear GEMMs in bf16 with fp32 weights and accumulation where "
                            "the CPU has native bf16 (avx512_bf16, amx_bf16), and is refused elsewhere",
                     group=RUN, choices=["off", "bf16", "fp16"])
    amp_level: str = _flag(
        "O1", "with --amp: O1 casts per op; O2 keeps the model in half precision with fp32 master weights "
              "in the optimizer (paddle.amp.decorate, master_weight=True; checkpoints hold fp32) (GPU)",
        group=RUN, choices=["O1", "O2"])
    sharding_stage: int = _flag(
        0, "shard over the processes: 1 = the optimizer states (fleet hybrid sharding, "
           "DygraphShardingOptimizer; runs on CPU too), 2 = optimizer states and gradients "
           "(paddle.distributed.sharding.group_sharded_parallel, level os_g; GPU). Checkpoints "
           "hold the whole optimizer state, so a run resumes with or without sharding", group=RUN, choices=[0, 1, 2])
    recompute: bool = _flag(
        False, "recompute encoder layers in the backward pass (DistributedStrategy.recompute)", group=RUN)
    fast_cpu_kernels: str = _flag(
        "auto", "GEMV bias gradients and transpose-free attention (paddle_electra.fast_cpu), compiled "
                "GELU/LayerNorm/dropout (paddle_electra.cpu_kernels); auto: on for CPU",
        group=RUN, choices=["auto", "on", "off"])
    no_progress: bool = _flag(False, "no tqdm bar (metrics still go to stdout)", group=RUN)
    eval_only: bool = _flag(
        False, "only evaluate (--init-from or the newest checkpoint) on --eval-data-dir; writes "
               "OUTPUT_DIR/eval_results.json", group=RUN)

    def __post_init__(self):
        missing = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(self)
                   if f.metadata["required"] and not getattr(self, f.name)]
        if missing:
            raise ValueError(f"PretrainConfig: {' and '.join(missing)} must be given")

    @classmethod
    def from_args(cls, args) -> "PretrainConfig":
        """The config of the flags that `add_arguments` parsed into `args` (other attributes, such as the
        launcher's, are not the trainer's and stay out)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _flag_type(annotation) -> Tuple[type, bool]:
    """(the argparse type of a field's annotation, whether it is a store_true switch)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    kind = args[0] if typing.get_origin(annotation) is typing.Union else annotation
    return kind, kind is bool


def add_arguments(parser):
    """Every field of PretrainConfig as a flag: --data-dir for data_dir, in the order of the fields,
    in their argument groups."""
    hints = typing.get_type_hints(PretrainConfig)
    groups = {}
    for f in dataclasses.fields(PretrainConfig):
        meta = f.metadata
        g = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        kind, switch = _flag_type(hints[f.name])
        name = "--" + f.name.replace("_", "-")
        if switch:
            g.add_argument(name, action="store_true", help=meta["help"])
        elif meta["required"]:
            g.add_argument(name, required=True, help=meta["help"])
        else:
            g.add_argument(name, type=None if kind is str else kind, default=f.default, choices=meta["choices"],
                           help=meta["help"])


# --- settings derived from the config ------------------------------------------------------------------
def warmup_steps(config: PretrainConfig) -> int:
    """--warmup-steps, or ceil(--warmup-ratio x --max-steps) when a ratio is given."""
    ratio = config.warmup_ratio
    if ratio is None:
        return config.warmup_steps
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"--warmup-ratio must be in [0, 1], got {ratio}")
    return int(math.ceil(ratio * config.max_steps))


def temperature_schedule(config: PretrainConfig) -> Callable[[int], float]:
    """step -> the sampling temperature of the optimizer step that starts at `step` (the lr schedule's
    convention): --temperature throughout, or linear from --temperature-start at step 0 to
    --temperature at --temperature-anneal-steps (default --max-steps) and constant after."""
    end, start, steps = config.temperature, config.temperature_start, config.temperature_anneal_steps
    for name, v in (("--temperature", end), ("--temperature-start", start)):
        if v is not None and not v > 0:
            raise ValueError(f"{name} must be positive, got {v}")
    if start is None:
        if steps is not None:
            raise ValueError("--temperature-anneal-steps needs --temperature-start")
        return lambda step: end
    steps = config.max_steps if steps is None else steps
    if steps <= 0:
        raise ValueError(f"--temperature-anneal-steps must be positive, got {steps}")
    return lambda step: end + (start - end) * max(0.0, 1.0 - step / steps)


def model_configs(config: PretrainConfig):
    """(discriminator, generator) ElectraConfigs of a run from scratch; (None, None) with --init-from."""
    if config.init_from:
        return None, None
    if bool(config.model) == bool(config.discriminator_config):
        raise ValueError("give exactly one of --model, --discriminator-config or --init-from")
    if config.model:
        v = get_variant(config.model)
        disc, gen = v.discriminator, v.generator
    else:
        disc = ElectraConfig.from_json_file(config.discriminator_config)
        gen = None
    if config.generator_config:
        gen = ElectraConfig.from_json_file(config.generator_config)
    elif gen is None:
        gen = generator_config_for(disc, int(round(disc.hidden_size * config.generator_hidden_fraction)))
    return disc, gen


def recipe(config: PretrainConfig, embedding_sharing: str) -> dict:
    """The training recipe's settings (the literature's options included), as the run uses them:
    written to run_info.json and to every checkpoint, compared on resume. `embedding_sharing`: the
    model's (an --init-from model brings its own)."""
    c = config
    return {"learning_rate": c.learning_rate, "max_steps": c.max_steps, "warmup_steps": warmup_steps(c),
            "warmup_ratio": c.warmup_ratio, "mask_prob": c.mask_prob,
            "gen_weight": c.gen_weight, "disc_weight": c.disc_weight, "temperature": c.temperature,
            "temperature_start": c.temperature_start, "temperature_anneal_steps": c.temperature_anneal_steps,
            "generator_lr_multiplier": c.generator_lr_multiplier, "embedding_sharing": embedding_sharing,
            "gradient_accumulation_steps": c.gradient_accumulation_steps}

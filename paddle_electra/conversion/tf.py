"""HFL's released TensorFlow checkpoints -> from_pretrained folders.

The name table. A released checkpoint holds the discriminator and the generator of one ELECTRA
pretraining run (see docs/design.md for the full list):

    TF variable                                        ours (model: state-dict key)
    electra/embeddings/word_embeddings               -> both: electra.embeddings.word_embeddings.weight
    electra/embeddings/LayerNorm/gamma, beta         -> both: electra.embeddings.LayerNorm.weight, bias
    electra/embeddings_project/kernel, bias          -> discriminator: electra.embeddings_project.weight, bias
    electra/encoder/layer_3/attention/self/query/... -> discriminator: electra.encoder.layer.3.attention.self.query...
    discriminator_predictions/dense_1/kernel         -> discriminator: discriminator_predictions.dense_1.weight
    generator/embeddings_project, generator/encoder  -> generator: electra.embeddings_project, electra.encoder
    generator_predictions/dense, LayerNorm            -> generator: generator_predictions.dense, LayerNorm
    generator_predictions/output_bias                -> generator: generator_predictions.output_bias
    global_step, */adam_m, */adam_v (training state) -> skipped

Rules: a Linear's `kernel` is our `weight` with no transpose (both are [in, out]); LayerNorm
`gamma`/`beta` are `weight`/`bias`; an embedding table has no leaf name in TF; `layer_N` is
`layer.N`. The whole embeddings block is shared, so it is read once and written to both models.

The table is generated from the models' own state dicts (`tf_name`), so every weight the model
has is looked for, and every variable in the checkpoint must be either used (exactly once) or
training state; anything else is reported by name and shape before a byte is written.
"""
from __future__ import annotations

import fnmatch
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import ConfigError, ElectraConfig
from ..modeling import ElectraDiscriminator, ElectraGenerator
from ..tokenizer import bundled_vocab_path, load_vocab
from .common import expected_shapes, model_card, write_converted
from .tf_checkpoint import TFCheckpoint, TFCheckpointError

DISCRIMINATOR, GENERATOR = "discriminator", "generator"
WORD_EMBEDDINGS = "electra/embeddings/word_embeddings"

# Optimizer state saved next to the weights: ELECTRA's AdamWeightDecayOptimizer slots
# (`<var>/adam_m`, `<var>/adam_v`), and the slot names of TF's stock optimizers.
OPTIMIZER_SLOTS = {"adam_m", "adam_v", "Adam", "Adam_1", "Momentum", "RMSProp", "RMSProp_1", "Adagrad",
                   "Adadelta", "Adadelta_1", "Ftrl", "Ftrl_1", "LAMB", "LAMB_1", "ExponentialMovingAverage"}
TRAINING_STATE = {"global_step", "beta1_power", "beta2_power", "good_steps", "loss_scale"}

MAX_LISTED = 40  # longest list of names an error prints before summarising the rest


def is_training_state(name: str) -> bool:
    parts = name.split("/")
    return name in TRAINING_STATE or parts[-1] in OPTIMIZER_SLOTS


# --- the name table ---------------------------------------------------------------------------------
def tf_name(model: str, key: str) -> str:
    """Our state-dict key (of ElectraDiscriminator or ElectraGenerator) -> the TF variable name."""
    parts = key.split(".")
    if parts[0] == "electra":
        shared = len(parts) > 1 and parts[1] == "embeddings"
        parts[0] = "electra" if model == DISCRIMINATOR or shared else "generator"
    leaf, parent = parts[-1], parts[-2]
    if leaf in ("weight", "bias"):
        if parent == "LayerNorm":
            parts[-1] = "gamma" if leaf == "weight" else "beta"
        elif parent.endswith("_embeddings"):
            parts = parts[:-1]  # TF embedding tables are bare variables
        elif leaf == "weight":
            parts[-1] = "kernel"
    name = "/".join(parts)
    return re.sub(r"/layer/(\d+)/", r"/layer_\1/", name)


def expected_variables(disc_config: ElectraConfig, gen_config: Optional[ElectraConfig] = None
                       ) -> Dict[str, Tuple[tuple, List[Tuple[str, str]]]]:
    """TF name -> (shape the models expect, [(model, our key), ...]) for the weights the models need."""
    table: Dict[str, Tuple[tuple, List[Tuple[str, str]]]] = {}
    models = [(DISCRIMINATOR, ElectraDiscriminator, disc_config)]
    if gen_config is not None:
        models.append((GENERATOR, ElectraGenerator, gen_config))
    for model, cls, cfg in models:
        for key, shape in expected_shapes(cls, cfg).items():
            name = tf_name(model, key)
            if name in table and table[name][0] != shape:
                raise ConfigError(f"discriminator and generator configs disagree on the shape of the shared "
                                 f"{name}: {list(table[name][0])} vs {list(shape)}")
            table.setdefault(name, (shape, []))[1].append((model, key))
    return table


# --- mapping a checkpoint ---------------------------------------------------------------------------
@dataclass
class MappedCheckpoint:
    discriminator: Dict[str, np.ndarray]
    generator: Optional[Dict[str, np.ndarray]]
    used: List[str] = field(default_factory=list)            # TF variables converted
    skipped: Dict[str, str] = field(default_factory=dict)    # TF variable -> why it was skipped


def _listing(items: Sequence[str]) -> str:
    shown = "\n    ".join(items[:MAX_LISTED])
    more = f"\n    ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "\n    " + shown + more


def _shape(s) -> str:
    return str(list(s))


def _config_line(cfg: ElectraConfig) -> str:
    return (f"vocab_size={cfg.vocab_size}, embedding_size={cfg.embedding_size}, hidden_size={cfg.hidden_size}, "
            f"num_hidden_layers={cfg.num_hidden_layers}, intermediate_size={cfg.intermediate_size}, "
            f"max_position_embeddings={cfg.max_position_embeddings}, type_vocab_size={cfg.type_vocab_size}")


def _layer_count(names: Iterable[str], scope: str) -> int:
    layers = [int(m.group(1)) for n in names for m in [re.match(rf"{scope}/encoder/layer_(\d+)/", n)] if m]
    return max(layers) + 1 if layers else 0


def map_checkpoint(ckpt: TFCheckpoint, disc_config: ElectraConfig, gen_config: Optional[ElectraConfig] = None,
                   skip: Sequence[str] = ()) -> MappedCheckpoint:
    """Read the weights the models need from `ckpt`, checking names and shapes first. `skip` holds
    extra glob patterns of variables to leave out on purpose. Raises TFCheckpointError naming every
    unknown, missing and mis-shaped variable."""
    table = expected_variables(disc_config, gen_config)
    shapes = ckpt.shapes()
    skipped, unknown = {}, []
    for name in shapes:
        if name in table:
            continue
        if is_training_state(name):
            skipped[name] = "training state"
        elif any(fnmatch.fnmatchcase(name, p) for p in skip):
            skipped[name] = "--skip"
        elif gen_config is None and name.split("/")[0] in ("generator", "generator_predictions"):
            skipped[name] = "generator not requested"
        else:
            unknown.append(name)
    missing = [n for n in table if n not in shapes]
    mismatched = [n for n in table if n in shapes and tuple(shapes[n]) != tuple(table[n][0])]

    if unknown or missing or mismatched:
        problems = []
        if unknown:
            problems.append(f"{len(unknown)} checkpoint variable(s) the model has no place for:"
                            + _listing([f"{n} {_shape(shapes[n])}" for n in unknown]))
        if missing:
            problems.append(f"{len(missing)} variable(s) the model needs are not in the checkpoint:"
                            + _listing([f"{n} {_shape(table[n][0])}" for n in missing]))
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatch(es), checkpoint vs config:"
                            + _listing([f"{n}: {_shape(shapes[n])} vs {_shape(table[n][0])}" for n in mismatched]))
        hints = [f"discriminator config: {_config_line(disc_config)}"]
        if gen_config is not None:
            hints.append(f"generator config: {_config_line(gen_config)}")
        for scope, cfg in (("electra", disc_config), ("generator", gen_config)):
            n = _layer_count(shapes, scope)
            if cfg is not None and n and n != cfg.num_hidden_layers:
                hints.append(f"the checkpoint's {scope} has {n} layers, the config says "
                             f"num_hidden_layers={cfg.num_hidden_layers}")
        if gen_config is not None and missing and all(n.startswith(("generator/", "generator_predictions/"))
                                                      for n in missing) and not unknown and not mismatched:
            hints.append("the checkpoint holds no (complete) generator: convert the discriminator alone "
                         "(no --generator-config; --discriminator-only with --model)")
        if any(n.startswith("generator/embeddings/") for n in unknown):
            hints.append("generator/embeddings/* means the generator has its own embeddings (untied); "
                         "these models share the discriminator's")
        raise TFCheckpointError(f"{ckpt.prefix}: the checkpoint does not fit the config(s):\n  "
                                + "\n  ".join(problems) + "\n  " + "\n  ".join(hints))

    disc: Dict[str, np.ndarray] = {}
    gen: Optional[Dict[str, np.ndarray]] = {} if gen_config is not None else None
    for name, (_, targets) in table.items():
        value = ckpt.read(name)
        if not np.issubdtype(value.dtype, np.floating):
            raise TFCheckpointError(f"{ckpt.index_path}: variable {name!r} has dtype {value.dtype}, "
                                    f"expected a floating-point weight")
        value = value.astype(np.float32, copy=False)
        for model, key in targets:
            (disc if model == DISCRIMINATOR else gen)[key] = value
    return MappedCheckpoint(discriminator=disc, generator=gen, used=list(table), skipped=skipped)


# --- the whole conversion -----------------------------------------------------------------------------
ConfigLike = Union[ElectraConfig, str, os.PathLike]


def _config(cfg: Optional[ConfigLike], ckpt: TFCheckpoint) -> Optional[ElectraConfig]:
    if cfg is None or isinstance(cfg, ElectraConfig):
        return cfg
    # HF-style configs may omit embedding_size; the checkpoint's word_embeddings width is the truth
    emb = ckpt.shape(WORD_EMBEDDINGS)[1] if WORD_EMBEDDINGS in ckpt and len(ckpt.shape(WORD_EMBEDDINGS)) == 2 else None
    return ElectraConfig.from_json_file(os.fspath(cfg), embedding_size=emb)


def _vocab(vocab_file: Optional[str], ckpt: TFCheckpoint, vocab_size: int) -> Optional[str]:
    """The vocab to ship: the one given, else the vocab.txt beside the checkpoint (HFL's zips hold
    one), else the bundled one; its size must match the config."""
    if vocab_file is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(ckpt.prefix)), "vocab.txt")
        vocab_file = beside if os.path.exists(beside) else bundled_vocab_path()
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(f"vocab file not found: {vocab_file}")
    try:
        n = len(load_vocab(vocab_file))
    except ValueError as e:  # duplicate or missing special tokens
        raise ConfigError(str(e)) from None
    if n != vocab_size:
        raise ConfigError(f"{vocab_file} has {n} tokens, but the config's vocab_size is {vocab_size}; "
                          f"pass the checkpoint's vocab with --vocab")
    return vocab_file


@dataclass
class ConversionSummary:
    output: str
    prefix: str
    converted: int
    skipped: Dict[str, int]  # reason -> number of variables
    discriminator_tensors: int
    generator_tensors: int
    seconds: float

    def line(self) -> str:
        gen = f", generator {self.generator_tensors} tensors" if self.generator_tensors else ""
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (f"converted {self.converted} variables (discriminator {self.discriminator_tensors} tensors{gen}), "
                f"skipped {sum(self.skipped.values())}{f' ({why})' if why else ''}, in {self.seconds:.2f} s: "
                f"{self.prefix} -> {self.output}")


def convert_tf_checkpoint(checkpoint: str, output: str, discriminator_config: ConfigLike,
                          generator_config: Optional[ConfigLike] = None, vocab_file: Optional[str] = None,
                          skip: Sequence[str] = (), overwrite: bool = False,
                          variant: Optional[str] = None) -> ConversionSummary:
    """Convert a released TF checkpoint (folder or prefix) to a from_pretrained folder: the
    discriminator always, the generator too when its config is given. Nothing is written unless
    everything checks out; an existing `output` is replaced only on success, and only when it is
    empty, a previous model folder, or `overwrite` (never when it is or holds the checkpoint).
    `variant`: the registered name, for the model card."""
    start = time.perf_counter()
    with TFCheckpoint(checkpoint) as ckpt:
        disc_cfg = _config(discriminator_config, ckpt)
        gen_cfg = _config(generator_config, ckpt)
        mapped = map_checkpoint(ckpt, disc_cfg, gen_cfg, skip)
        vocab = _vocab(vocab_file, ckpt, disc_cfg.vocab_size)
        card = model_card(source=f"TensorFlow checkpoint {os.path.abspath(ckpt.prefix)}", config=disc_cfg,
                          architecture="ElectraDiscriminator", with_generator=gen_cfg is not None, variant=variant)
        write_converted(output, disc_cfg, mapped.discriminator, gen_cfg, mapped.generator, vocab_file=vocab,
                        source=ckpt.prefix, metadata={"source": "tensorflow checkpoint",
                                                      "checkpoint": os.path.basename(ckpt.prefix)},
                        card=lambda _: card, inputs=[os.path.dirname(os.path.abspath(ckpt.prefix))],
                        overwrite=overwrite)
    return ConversionSummary(output=output, prefix=ckpt.prefix, converted=len(mapped.used),
                             skipped=dict(Counter(mapped.skipped.values())), discriminator_tensors=len(mapped.discriminator),
                             generator_tensors=len(mapped.generator or {}),
                             seconds=time.perf_counter() - start)

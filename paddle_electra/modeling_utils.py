"""The loading base class every model gets: save_pretrained / from_pretrained (safetensors), strict
loading, and the LoadReport that says what a load took from the files and what it initialised.

A from_pretrained dir holds `config.json` + `model.safetensors` (+ `vocab.txt`). A pretraining dir
(a converted release, or a pretraining run's export) also holds `generator_config.json` +
`generator.safetensors`, so one folder serves ElectraDiscriminator, ElectraGenerator and
ElectraForPreTraining. Pickle formats are never read implicitly.

Names (registered variants, HF repo ids) are turned into folders by the resolver that
paddle_electra/__init__.py registers with `set_resolver` (`paddle_electra.resolve.resolve`): resolving may
download and convert, which needs the models and converters that import this module, so this module
calls it without importing it.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from .config import ElectraConfig
from .io import (CONFIG_NAME, EMBEDDING_DELTAS_NAME, GENERATOR_CONFIG_NAME, GENERATOR_PDPARAMS_NAME, GENERATOR_WEIGHTS_NAME, MODEL_DIR,
                 PDPARAMS_NAME, VOCAB_NAME, WEIGHTS_NAME, CheckpointError, load_pdparams, output_dir, load_tensors,
                 save_tensors)

logger = logging.getLogger(__name__)


# --- name resolution (installed from above) -----------------------------------------------------------
def _folders_only(name_or_path: str) -> str:
    if os.path.isdir(name_or_path):
        return name_or_path
    raise FileNotFoundError(f"{name_or_path!r} is not a folder")


_resolver: Callable[[str], str] = _folders_only


def set_resolver(fn: Callable[[str], str]):
    """Install how from_pretrained turns a name into a folder (paddle_electra.resolve does)."""
    global _resolver
    _resolver = fn


def resolve_name(name_or_path: str) -> str:
    return _resolver(name_or_path)


# --- the outcome of a load ----------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What from_pretrained did: the folder and files read, the class the folder was saved from,
    and the tensors that were not in the files and keep the model's own initialisation (a new task
    head on a pretrained backbone). `model.load_report` holds it; None for a model not loaded."""
    path: str
    files: List[str]
    source_architectures: Optional[List[str]] = None
    newly_initialized: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every tensor of the model came from the files."""
        return not self.newly_initialized


# --- checking and assigning state ---------------------------------------------------------------------
def state_to_numpy(layer) -> Dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in layer.state_dict().items()}


def check_state(expected: Dict[str, tuple], got: Dict[str, np.ndarray], source: str):
    """Raise one error listing every missing, unexpected and shape-mismatched tensor."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mismatched = [f"{k}: file {tuple(got[k].shape)} vs model {tuple(expected[k])}"
                  for k in sorted(set(expected) & set(got)) if tuple(got[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append("missing: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected))
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems))


def load_state_strict(layer, tensors: Dict[str, np.ndarray], source: str):
    """Check everything first, then assign: a failed load leaves the model untouched."""
    import paddle  # here: the io helpers of this module are used by commands that never load a model
    state = layer.state_dict()
    check_state({k: v.shape for k, v in state.items()}, tensors, source)
    for k, v in state.items():
        v.set_value(paddle.to_tensor(tensors[k]).astype(v.dtype))


def read_weights(path: str, filename: str, allow_pickle: bool) -> Dict[str, np.ndarray]:
    """`path/filename` (safetensors), or its pickle twin when `allow_pickle`."""
    f = os.path.join(path, filename)
    if os.path.exists(f):
        return load_tensors(f)
    pickled = os.path.join(path, PDPARAMS_NAME if filename != GENERATOR_WEIGHTS_NAME else GENERATOR_PDPARAMS_NAME)
    if os.path.exists(pickled):
        if not allow_pickle:
            raise CheckpointError(
                f"{path} has no {filename}, only the pickle file {os.path.basename(pickled)}; pickle can run "
                f"code when loaded, so pass allow_pickle=True if you trust it")
        return load_pdparams(pickled)
    raise CheckpointError(f"weight file not found: {f}")


def _embedding_size_from(weights: Dict[str, np.ndarray]) -> Optional[int]:
    for k, v in weights.items():
        if k.endswith("embeddings.word_embeddings.weight"):
            return int(v.shape[1])
    return None


# --- the mixin every model class gets --------------------------------------------------------------
class PretrainedMixin:
    """from_pretrained / save_pretrained for ElectraModel, ElectraDiscriminator, ElectraGenerator,
    ElectraForPreTraining and the task heads (which override `_build` and `_adapt_weights`)."""

    load_report: Optional[LoadReport] = None

    def _config_dict_extra(self) -> Dict:
        return {"architectures": [type(self).__name__]}

    def save_pretrained(self, path: str, vocab_file: Optional[str] = None, overwrite: bool = False):
        """Write a from_pretrained dir at `path` in one rename. An existing `path` is replaced only
        when it is empty, a previous model folder, or `overwrite` is given; never a file."""
        from .tokenizer import bundled_vocab_path  # here: the tokenizer is not needed to load weights
        with output_dir(path, MODEL_DIR, overwrite=overwrite) as tmp:
            self._write_weights(tmp)
            shutil.copyfile(vocab_file or bundled_vocab_path(), os.path.join(tmp, VOCAB_NAME))
            self._save_extra(tmp)
        return path

    def _write_weights(self, tmp: str):
        cfg = self.config.replace(extra={**self.config.extra, **self._config_dict_extra()})
        cfg.to_json_file(os.path.join(tmp, CONFIG_NAME))
        save_tensors(state_to_numpy(self), os.path.join(tmp, WEIGHTS_NAME))

    def _save_extra(self, path: str):
        """Task heads write their label map here."""

    @classmethod
    def _build(cls, path: str, config: ElectraConfig, **kwargs):
        return cls(config, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: str, allow_pickle: bool = False, **kwargs):
        path = resolve_name(name_or_path)
        cfg_name, weights_name = cls._files(path)
        weights = read_weights(path, weights_name, allow_pickle)
        config = ElectraConfig.from_json_file(
            os.path.join(path, cfg_name), embedding_size=_embedding_size_from(weights))
        model = cls._build(path, config, **kwargs)
        weights = model._adapt_weights(weights)
        # a hook maps a tensor to None to keep the model's own initialisation (a new head)
        new = sorted(k for k, v in weights.items() if v is None)
        if new:
            state = model.state_dict()
            weights = {k: (state[k].numpy() if v is None and k in state else v) for k, v in weights.items()}
            logger.warning("%s: initialised new head tensors (not in %s): %s", cls.__name__, path, ", ".join(new))
        load_state_strict(model, weights, os.path.join(path, weights_name))
        model.load_report = LoadReport(path, [weights_name], config.extra.get("architectures"), new)
        return model

    @classmethod
    def _files(cls, path: str):
        """(config, weights) file names this class reads from `path`."""
        return CONFIG_NAME, WEIGHTS_NAME

    def _adapt_weights(self, weights: Dict[str, np.ndarray]) -> Dict[str, Optional[np.ndarray]]:
        """Hook for classes that take a checkpoint of another class (ElectraModel, the task heads):
        rename or drop tensors; a tensor mapped to None keeps the model's initialisation."""
        return weights


class PretrainingPairMixin(PretrainedMixin):
    """ElectraForPreTraining's checkpoint is a pair: the discriminator in model.safetensors, the
    generator in generator.safetensors, the embeddings block stored in both (and checked equal).

    With gradient-disentangled sharing (embedding_sharing "gdes") the discriminator's tables are the
    generator's plus its deltas: model.safetensors holds the summed tables (so ElectraDiscriminator,
    ElectraModel and the task heads load it as a plain ELECTRA discriminator) and
    embedding_deltas.safetensors the deltas themselves (checked: summed table = generator's + delta,
    exactly), which is what marks a folder as a gdes pair."""

    _DELTA_SUFFIX = "_delta"

    def _write_weights(self, tmp: str):
        self.discriminator.config.to_json_file(os.path.join(tmp, CONFIG_NAME))
        self.generator.config.to_json_file(os.path.join(tmp, GENERATOR_CONFIG_NAME))
        disc, gen = state_to_numpy(self.discriminator), state_to_numpy(self.generator)
        if getattr(self, "embedding_sharing", "original") == "gdes":
            deltas = {k: disc.pop(k) for k in [k for k in disc if k.endswith(self._DELTA_SUFFIX)]}
            for k, d in deltas.items():
                table = k[:-len(self._DELTA_SUFFIX)] + ".weight"
                disc[table] = gen[table] + d  # float32, as GDESEmbeddings.table adds them
            save_tensors(deltas, os.path.join(tmp, EMBEDDING_DELTAS_NAME))
        save_tensors(disc, os.path.join(tmp, WEIGHTS_NAME))
        save_tensors(gen, os.path.join(tmp, GENERATOR_WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, name_or_path: str, allow_pickle: bool = False, embedding_sharing: Optional[str] = None,
                        **kwargs):
        """`embedding_sharing`: None = the folder's ("gdes" when it holds embedding_deltas.safetensors);
        "gdes" on an original pair starts gradient-disentangled sharing from it (the generator keeps the
        shared block, the deltas start at zero, the discriminator's LayerNorm at the shared one's);
        "original" on a gdes pair is refused (its two embeddings differ)."""
        path = resolve_name(name_or_path)
        gen_cfg_file = os.path.join(path, GENERATOR_CONFIG_NAME)
        if not os.path.exists(gen_cfg_file):
            raise CheckpointError(f"{path} holds no generator ({GENERATOR_CONFIG_NAME}); "
                                  f"ElectraForPreTraining needs a pretraining dir")
        deltas_file = os.path.join(path, EMBEDDING_DELTAS_NAME)
        found = "gdes" if os.path.exists(deltas_file) else "original"
        sharing = embedding_sharing or found
        if found == "gdes" and sharing != "gdes":
            raise CheckpointError(
                f"{path} is a pair with gradient-disentangled embedding sharing ({EMBEDDING_DELTAS_NAME}): its "
                f"discriminator's embeddings are not the generator's, so it cannot be loaded with {sharing!r} "
                f"sharing; use embedding_sharing='gdes' (--embedding-sharing gdes), or load the discriminator "
                f"alone (ElectraDiscriminator.from_pretrained)")
        disc_cfg = ElectraConfig.from_json_file(os.path.join(path, CONFIG_NAME))
        model = cls(disc_cfg, ElectraConfig.from_json_file(gen_cfg_file), embedding_sharing=sharing)
        disc = read_weights(path, WEIGHTS_NAME, allow_pickle)
        gen = read_weights(path, GENERATOR_WEIGHTS_NAME, allow_pickle)
        src = os.path.join(path, WEIGHTS_NAME)
        files = [WEIGHTS_NAME, GENERATOR_WEIGHTS_NAME]
        gen_src = os.path.join(path, GENERATOR_WEIGHTS_NAME)
        gen_shapes = {k: v.shape for k, v in model.generator.state_dict().items()}
        if sharing == "original":
            check_state({k: v.shape for k, v in model.discriminator.state_dict().items()}, disc, src)
            check_state(gen_shapes, gen, gen_src)
            for k in [k for k in gen if k.startswith("electra.embeddings.")]:
                if not np.array_equal(gen[k], disc[k]):
                    raise CheckpointError(f"{path}: shared tensor {k} differs between {WEIGHTS_NAME} and "
                                          f"{GENERATOR_WEIGHTS_NAME}")
        else:
            check_state(gen_shapes, gen, gen_src)
            deltas = load_tensors(deltas_file) if found == "gdes" else None
            if deltas is not None:
                files.append(EMBEDDING_DELTAS_NAME)
            for k in [k for k in model.discriminator.state_dict() if k.endswith(cls._DELTA_SUFFIX)]:
                table = k[:-len(cls._DELTA_SUFFIX)] + ".weight"
                if table not in disc or table not in gen:
                    raise CheckpointError(f"{path}: {table} missing from {WEIGHTS_NAME} or {GENERATOR_WEIGHTS_NAME}")
                summed = disc.pop(table)
                if deltas is None:  # an original pair: both hold the shared table
                    disc[k] = np.zeros_like(summed)
                    continue
                if k not in deltas:
                    raise CheckpointError(f"{deltas_file}: no tensor {k}")
                if deltas[k].shape != summed.shape or not np.array_equal(gen[table] + deltas[k], summed):
                    raise CheckpointError(f"{path}: {table} of {WEIGHTS_NAME} is not the generator's table plus "
                                          f"{k} of {EMBEDDING_DELTAS_NAME} (files from different saves?)")
                disc[k] = deltas[k]
            check_state({k: v.shape for k, v in model.discriminator.state_dict().items()}, disc, src)
        load_state_strict(model.discriminator, disc, src)
        load_state_strict(model.generator, gen, gen_src)
        model.load_report = LoadReport(path, files, disc_cfg.extra.get("architectures"))
        return model

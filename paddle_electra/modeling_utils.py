"""The loading base class every model gets: save_pretrained / from_pretrained (safetensors), strict
loading, and the LoadReport that says what a load took from the files and what it initialised.

A from_pretrained dir holds `config.json` + `model.safetensors` (+ `vocab.txt`). A pretraining dir
(a converted release, or a pretraining run's export) also holds `generator_config.json` +
`generator.safetensors`, so one folder serves ElectraDiscriminator, ElectraGenerator and
ElectraForPreTraining. Pickle formats are never read implicitly.

Names (registered variants, HF repo ids) are turned into folders by the resolver that
`paddle_electra.resolve` installs with `set_resolver` when the package is imported: resolving may
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
from .io import (CONFIG_NAME, GENERATOR_CONFIG_NAME, GENERATOR_PDPARAMS_NAME, GENERATOR_WEIGHTS_NAME, MODEL_DIR,
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
    generator in generator.safetensors, the embeddings block stored in both (and checked equal)."""

    def _write_weights(self, tmp: str):
        self.discriminator.config.to_json_file(os.path.join(tmp, CONFIG_NAME))
        self.generator.config.to_json_file(os.path.join(tmp, GENERATOR_CONFIG_NAME))
        save_tensors(state_to_numpy(self.discriminator), os.path.join(tmp, WEIGHTS_NAME))
        save_tensors(state_to_numpy(self.generator), os.path.join(tmp, GENERATOR_WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, name_or_path: str, allow_pickle: bool = False, **kwargs):
        path = resolve_name(name_or_path)
        gen_cfg_file = os.path.join(path, GENERATOR_CONFIG_NAME)
        if not os.path.exists(gen_cfg_file):
            raise CheckpointError(f"{path} holds no generator ({GENERATOR_CONFIG_NAME}); "
                                  f"ElectraForPreTraining needs a pretraining dir")
        disc_cfg = ElectraConfig.from_json_file(os.path.join(path, CONFIG_NAME))
        model = cls(disc_cfg, ElectraConfig.from_json_file(gen_cfg_file))
        disc = read_weights(path, WEIGHTS_NAME, allow_pickle)
        gen = read_weights(path, GENERATOR_WEIGHTS_NAME, allow_pickle)
        src = os.path.join(path, WEIGHTS_NAME)
        check_state({k: v.shape for k, v in model.discriminator.state_dict().items()}, disc, src)
        check_state({k: v.shape for k, v in model.generator.state_dict().items()}, gen,
                    os.path.join(path, GENERATOR_WEIGHTS_NAME))
        for k in [k for k in gen if k.startswith("electra.embeddings.")]:
            if not np.array_equal(gen[k], disc[k]):
                raise CheckpointError(f"{path}: shared tensor {k} differs between {WEIGHTS_NAME} and "
                                      f"{GENERATOR_WEIGHTS_NAME}")
        load_state_strict(model.discriminator, disc, src)
        load_state_strict(model.generator, gen, os.path.join(path, GENERATOR_WEIGHTS_NAME))
        model.load_report = LoadReport(path, [WEIGHTS_NAME, GENERATOR_WEIGHTS_NAME],
                                       disc_cfg.extra.get("architectures"))
        return model

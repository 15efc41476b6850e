"""Weights on disk: save_pretrained / from_pretrained (safetensors), strict loading, name resolution.

A from_pretrained dir holds `config.json` + `model.safetensors` (+ `vocab.txt`). A pretraining dir
(a converted release, or a pretraining run's export) also holds `generator_config.json` +
`generator.safetensors`, so one folder serves ElectraDiscriminator, ElectraGenerator and
ElectraForPreTraining. Pickle formats are never read implicitly.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Dict, Optional

import numpy as np

from .config import CONFIG_NAME, GENERATOR_CONFIG_NAME, ElectraConfig, get_variant

WEIGHTS_NAME = "model.safetensors"
GENERATOR_WEIGHTS_NAME = "generator.safetensors"
PDPARAMS_NAME = "model_state.pdparams"
VOCAB_NAME = "vocab.txt"
LABEL_MAP_NAME = "label_map.json"


class CheckpointError(ValueError):
    """A weight file does not fit the model: names the file and the tensors."""


def models_home() -> str:
    return os.environ.get("PADDLE_ELECTRA_HOME", os.path.join(os.path.expanduser("~"), ".paddle_electra", "models"))


# --- atomic folder writes --------------------------------------------------------------------
@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = True):
    """Yield a temporary folder beside `path`; on success it replaces `path` in one rename, on
    error it is removed, so `path` is never left half written."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        yield tmp
        _public_permissions(tmp)
        if os.path.exists(path):
            if not overwrite:
                raise FileExistsError(f"{path} exists")
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "x"))
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(os.path.join(old, "x"), path)  # put the previous folder back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _public_permissions(root: str):
    # mkdtemp makes a 0700 folder; give the result the modes a plain mkdir/open would have
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~umask)


# --- safetensors --------------------------------------------------------------------------------
def save_tensors(tensors: Dict[str, np.ndarray], path: str, metadata: Optional[Dict[str, str]] = None):
    from safetensors.numpy import save_file
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path,
              metadata={"format": "paddle", **(metadata or {})})


def load_tensors(path: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    if not os.path.exists(path):
        raise CheckpointError(f"weight file not found: {path}")
    try:
        return load_file(path)
    except Exception as e:  # truncated or corrupt files raise SafetensorError / OSError
        raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None


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
    import paddle
    state = layer.state_dict()
    check_state({k: v.shape for k, v in state.items()}, tensors, source)
    for k, v in state.items():
        v.set_value(paddle.to_tensor(tensors[k]).astype(v.dtype))


# --- resolution of names --------------------------------------------------------------------------
def resolve(name_or_path: str, download: bool = True) -> str:
    """A folder as is; a registered variant name (or its HF repo id) from $PADDLE_ELECTRA_HOME/<name>,
    downloading HFL's HF weights there when the network allows; else an error saying what to do."""
    if os.path.isdir(name_or_path):
        return name_or_path
    try:
        variant = get_variant(name_or_path)
    except KeyError:
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a folder nor a registered variant "
            f"(see `paddle-electra list`)") from None
    local = os.path.join(models_home(), variant.name)
    if os.path.exists(os.path.join(local, CONFIG_NAME)):
        return local
    errors = []
    if download:
        from .hub_download import download_variant
        try:
            return download_variant(variant, local)
        except OSError as e:
            errors.append(str(e))
    raise FileNotFoundError(
        f"weights for {variant.name} are not at {local}"
        + (f" and could not be downloaded ({errors[0]})" if errors else "") + ".\n"
        f"Convert the released checkpoint there, either the TF checkpoint ({variant.tf_zip or 'from HFL'}):\n"
        f"  paddle-electra convert tf --checkpoint <unzipped folder> --model {variant.name} --output {local}\n"
        f"or the HF repos {variant.hf_discriminator} / {variant.hf_generator}:\n"
        f"  paddle-electra convert hf --input <discriminator folder> --generator <generator folder> --output {local}\n"
        f"(or set PADDLE_ELECTRA_HOME to the folder that holds {variant.name}/).")


# --- the mixin every model class gets --------------------------------------------------------------
class PretrainedMixin:
    """from_pretrained / save_pretrained for ElectraModel, ElectraDiscriminator, ElectraGenerator,
    ElectraForPreTraining and the task heads (which add `extra_init_kwargs`)."""

    def _config_dict_extra(self) -> Dict:
        return {"architectures": [type(self).__name__]}

    def save_pretrained(self, path: str, vocab_file: Optional[str] = None):
        from .tokenizer import bundled_vocab_path
        with atomic_dir(path) as tmp:
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
        path = resolve(name_or_path)
        cfg_name, weights_name = cls._files(path)
        weights = _read_weights(path, weights_name, allow_pickle)
        config = ElectraConfig.from_json_file(
            os.path.join(path, cfg_name), embedding_size=_embedding_size_from(weights))
        model = cls._build(path, config, **kwargs)
        weights = model._adapt_weights(weights)
        load_state_strict(model, weights, os.path.join(path, weights_name))
        return model

    @classmethod
    def _files(cls, path: str):
        """(config, weights) file names this class reads from `path`."""
        return CONFIG_NAME, WEIGHTS_NAME

    def _adapt_weights(self, weights: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Hook for classes that take a checkpoint of another class (ElectraModel, the task heads)."""
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
        path = resolve(name_or_path)
        gen_cfg_file = os.path.join(path, GENERATOR_CONFIG_NAME)
        if not os.path.exists(gen_cfg_file):
            raise CheckpointError(f"{path} holds no generator ({GENERATOR_CONFIG_NAME}); "
                                  f"ElectraForPreTraining needs a pretraining dir")
        model = cls(ElectraConfig.from_json_file(os.path.join(path, CONFIG_NAME)),
                    ElectraConfig.from_json_file(gen_cfg_file))
        disc = _read_weights(path, WEIGHTS_NAME, allow_pickle)
        gen = _read_weights(path, GENERATOR_WEIGHTS_NAME, allow_pickle)
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
        return model


def _embedding_size_from(weights: Dict[str, np.ndarray]) -> Optional[int]:
    for k, v in weights.items():
        if k.endswith("embeddings.word_embeddings.weight"):
            return int(v.shape[1])
    return None


def _read_weights(path: str, filename: str, allow_pickle: bool) -> Dict[str, np.ndarray]:
    f = os.path.join(path, filename)
    if os.path.exists(f):
        return load_tensors(f)
    pickled = os.path.join(path, PDPARAMS_NAME if filename == WEIGHTS_NAME else "generator_state.pdparams")
    if os.path.exists(pickled):
        if not allow_pickle:
            raise CheckpointError(
                f"{path} has no {filename}, only the pickle file {os.path.basename(pickled)}; pickle can run "
                f"code when loaded, so pass allow_pickle=True if you trust it")
        return load_pdparams(pickled)
    raise CheckpointError(f"weight file not found: {f}")


def load_pdparams(path: str) -> Dict[str, np.ndarray]:
    """Read a Paddle pickle (.pdparams). Only call this on files you trust."""
    import paddle
    state = paddle.load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(state).__name__}")
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in state.items()}



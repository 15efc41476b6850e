"""Convert Hugging Face Electra repos (hfl/chinese-electra-*) to from_pretrained dirs.

An HF repo folder holds `config.json` (HF ElectraConfig) and `model.safetensors` or
`pytorch_model.bin` (read by the restricted unpickler in paddle_electra.io.torch_pickle: torch is not needed and the
file cannot run code). HF's module names mirror the TF scopes, as ours do, so the map is short:

| HF                                              | ours                                      |
|-------------------------------------------------|-------------------------------------------|
| electra.* (ElectraForPreTraining / ForMaskedLM) | electra.*                                 |
| * (a bare ElectraModel)                         | * (ElectraModel names)                    |
| discriminator_predictions.dense_prediction      | discriminator_predictions.dense_1         |
| generator_lm_head.bias                          | generator_predictions.output_bias         |
| generator_lm_head.weight                        | (tied to word_embeddings: checked, dropped) |
| *.position_ids, *.token_type_ids buffers        | (dropped)                                 |

PyTorch Linear weights are [out, in], Paddle's [in, out]: every 2-D `.weight` but the embedding
tables is transposed.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Dict, Optional, Tuple

import numpy as np

from ..io import CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME, CheckpointError, atomic_dir, load_tensors, save_tensors
from ..io.torch_pickle import load_torch_state_dict
from ..modeling import ElectraGenerator, ElectraModel
from ..modeling_utils import check_state
from ..tokenizer import bundled_vocab_path
from ..config import ConfigError, ElectraConfig
from .common import expected_shapes, write_converted

HF_SAFETENSORS = "model.safetensors"
HF_BIN = "pytorch_model.bin"
_EMBEDDING_TABLES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_HEAD_RENAMES = {
    "discriminator_predictions.dense_prediction.": "discriminator_predictions.dense_1.",
    "generator_lm_head.bias": "generator_predictions.output_bias",
}
# config fields that describe HF's file, not the model
_HF_ONLY_FIELDS = ("architectures", "_name_or_path", "transformers_version", "torch_dtype")


def read_hf_weights(folder: str) -> Tuple[Dict[str, np.ndarray], str]:
    """The state dict of an HF repo folder (safetensors preferred; sharded files via their index),
    and the file it came from (for messages)."""
    for index_name, reader in ((HF_SAFETENSORS + ".index.json", load_tensors), (HF_BIN + ".index.json", None)):
        index = os.path.join(folder, index_name)
        if os.path.exists(index):
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            tensors = {}
            for shard in shards:
                tensors.update(_read_one(os.path.join(folder, shard)))
            return tensors, index
    for name in (HF_SAFETENSORS, HF_BIN):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return _read_one(path), path
    raise CheckpointError(f"{folder}: no {HF_SAFETENSORS} or {HF_BIN} (an HF Electra repo folder holds "
                          f"config.json and one of them)")


def _read_one(path: str) -> Dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        return load_tensors(path)
    return load_torch_state_dict(path)


def _kind(names, source: str) -> str:
    disc = any(k.startswith("discriminator_predictions.") for k in names)
    gen = any(k.startswith(("generator_predictions.", "generator_lm_head.")) for k in names)
    if disc and gen:
        raise CheckpointError(f"{source}: holds both discriminator_predictions.* and generator_predictions.*; "
                              f"expected one HF model (ElectraForPreTraining or ElectraForMaskedLM)")
    if disc or gen:
        return "discriminator" if disc else "generator"
    if any(k.startswith("electra.") for k in names):
        return "electra"  # a backbone saved under a task model's prefix, without heads
    return "backbone"     # a bare HF ElectraModel


def hf_to_paddle(tensors: Dict[str, np.ndarray], source: str) -> Tuple[str, Dict[str, np.ndarray]]:
    """Rename and transpose an HF Electra state dict. Returns (kind, tensors) with kind one of
    "discriminator" (ElectraDiscriminator names), "generator" (ElectraGenerator names) or
    "backbone" (ElectraModel names)."""
    tensors = {k: v for k, v in tensors.items() if not k.endswith(_BUFFERS)}
    kind = _kind(tensors, source)
    out = {}
    lm_weight = None
    for k, v in tensors.items():
        name = k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if kind == "electra":
            name = name[len("electra."):] if name.startswith("electra.") else name
        if name == "generator_lm_head.weight":
            lm_weight = (k, v)
            continue
        for old, new in _HEAD_RENAMES.items():
            if name.startswith(old):
                name = new + name[len(old):]
        v = np.asarray(v)
        if v.dtype != np.float32:
            if not np.issubdtype(v.dtype, np.floating):
                raise CheckpointError(f"{source}: tensor {k} has dtype {v.dtype}, expected floating point")
            v = v.astype(np.float32)
        if v.ndim == 2 and name.endswith(".weight") and not name.endswith(_EMBEDDING_TABLES):
            v = np.ascontiguousarray(v.T)  # torch Linear [out, in] -> paddle [in, out]
        out[name] = v
    if lm_weight is not None:  # HF's LM head is tied to the input embeddings; ours is not a parameter
        word = out.get("electra.embeddings.word_embeddings.weight")
        k, v = lm_weight
        if word is None or word.shape != v.shape or not np.array_equal(word, v.astype(np.float32)):
            shape = None if word is None else word.shape
            raise CheckpointError(
                f"{source}: {k} {tuple(v.shape)} is not tied to electra.embeddings.word_embeddings.weight "
                f"{shape}; ElectraGenerator's output layer is the word embeddings (as the original)")
    return ("backbone" if kind == "electra" else kind), out


def read_hf_config(folder: str, embedding_size: Optional[int]) -> ElectraConfig:
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.exists(path):
        raise ConfigError(f"{folder}: no {CONFIG_NAME} (an HF Electra repo folder holds config.json)")
    with open(path, encoding="utf-8") as f:
        try:
            d = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if d.get("model_type", "electra") != "electra":
        raise ConfigError(f"{path}: model_type is {d['model_type']!r}, expected 'electra'")
    if d.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{path}: position_embedding_type {d['position_embedding_type']!r} is not supported "
                          f"(ELECTRA uses 'absolute')")
    # a config's embedding_size must agree with the weights; HF's default (128) when it is absent
    if embedding_size is not None and "embedding_size" in d and d["embedding_size"] != embedding_size:
        raise ConfigError(f"{path}: embedding_size {d['embedding_size']} but the word embeddings are "
                          f"{embedding_size} wide")
    d = {k: v for k, v in d.items() if k not in _HF_ONLY_FIELDS}
    return ElectraConfig.from_dict(d, source=path, embedding_size=embedding_size)


def _read_model(folder: str):
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"HF repo folder not found: {folder}")
    tensors, source = read_hf_weights(folder)
    kind, tensors = hf_to_paddle(tensors, source)
    word = tensors.get(("" if kind == "backbone" else "electra.") + "embeddings.word_embeddings.weight")
    if word is None:
        raise CheckpointError(f"{source}: no word embeddings (electra.embeddings.word_embeddings.weight); "
                              f"is this an HF Electra model?")
    config = read_hf_config(folder, embedding_size=int(word.shape[1]))
    if kind == "generator" and config.hidden_act != "gelu":
        # HF's generator head always applies erf-gelu; ours follows hidden_act (as the original)
        raise ConfigError(f"{os.path.join(folder, CONFIG_NAME)}: generator with hidden_act "
                          f"{config.hidden_act!r}: HF's head uses gelu regardless, the outputs would differ")
    return kind, config, tensors, source


def _write_single(output: str, config: ElectraConfig, tensors: Dict[str, np.ndarray], model_cls,
                  vocab_file: str, source: str, metadata: Dict[str, str]) -> str:
    """A from_pretrained dir of one model (ElectraModel or standalone ElectraGenerator names)."""
    check_state(expected_shapes(model_cls, config), tensors, source)
    with atomic_dir(output) as tmp:
        config.to_json_file(os.path.join(tmp, CONFIG_NAME))
        save_tensors(tensors, os.path.join(tmp, WEIGHTS_NAME), metadata)
        shutil.copyfile(vocab_file, os.path.join(tmp, VOCAB_NAME))
    return output


def _with_architecture(config: ElectraConfig, name: str) -> ElectraConfig:
    return config.replace(extra={**config.extra, "architectures": [name]})


def convert_hf(input_dir: str, output: str, generator_dir: Optional[str] = None) -> str:
    """Convert the HF repo folder `input_dir` (a discriminator, a generator or a bare ElectraModel)
    into `output`, a from_pretrained dir. With `generator_dir` (the matching HF generator) the output
    is a pretraining dir holding both, loadable by ElectraForPreTraining too."""
    kind, config, tensors, source = _read_model(input_dir)
    vocab = os.path.join(input_dir, VOCAB_NAME)
    vocab = vocab if os.path.exists(vocab) else bundled_vocab_path()
    metadata = {"converted_from": "hf"}

    if generator_dir is None:
        if kind == "discriminator":
            return write_converted(output, _with_architecture(config, "ElectraDiscriminator"), tensors,
                                   vocab_file=vocab, source=source, metadata=metadata)
        if kind == "generator":
            return _write_single(output, _with_architecture(config, "ElectraGenerator"), tensors,
                                 ElectraGenerator, vocab, source, metadata)
        return _write_single(output, _with_architecture(config, "ElectraModel"), tensors, ElectraModel,
                             vocab, source, metadata)

    if kind != "discriminator":
        raise CheckpointError(f"{source}: --input must be the discriminator (HF ElectraForPreTraining) when "
                              f"--generator is given; this file holds a {kind}")
    gkind, gconfig, gtensors, gsource = _read_model(generator_dir)
    if gkind != "generator":
        raise CheckpointError(f"{gsource}: --generator must be an HF ElectraForMaskedLM; this file holds a {gkind}")
    for field in ("embedding_size", "vocab_size", "max_position_embeddings", "type_vocab_size"):
        if getattr(gconfig, field) != getattr(config, field):
            raise ConfigError(f"{field} differs: {getattr(config, field)} in {input_dir} vs "
                              f"{getattr(gconfig, field)} in {generator_dir}; the two must share embeddings")
    # the original shares the whole embeddings block; a pretraining dir stores it twice, identical
    for k in sorted(k for k in tensors if k.startswith("electra.embeddings.")):
        a, b = tensors[k], gtensors.get(k)
        if b is None or a.shape != b.shape or not np.array_equal(a, b):
            detail = ("missing" if b is None else f"{tuple(b.shape)}" if a.shape != b.shape
                      else f"max abs difference {float(np.max(np.abs(a - b))):.3g}")
            raise CheckpointError(
                f"shared tensor {k} differs between {source} {tuple(a.shape)} and {gsource} ({detail}); "
                f"a pretraining dir needs the generator and discriminator of one release")
    return write_converted(output, _with_architecture(config, "ElectraDiscriminator"), tensors,
                           _with_architecture(gconfig, "ElectraGenerator"), gtensors, vocab_file=vocab,
                           source=f"{source} + {gsource}", metadata=metadata)

"""Convert Hugging Face Electra repos (hfl/chinese-electra-*, and models fine-tuned from them with
transformers) to from_pretrained dirs.

An HF repo folder holds `config.json` (HF ElectraConfig) and `model.safetensors` or
`pytorch_model.bin` (read by the restricted unpickler in paddle_electra.io.torch_pickle: torch is
not needed and the file cannot run code), or sharded files listed in `*.index.json`. Every file is
read from inside the folder: a link out of it (or a shard path with `..`) is refused, except the
links of an HF cache snapshot into its repo's `blobs/`. HF's module names mirror the TF scopes, as
ours do, so the map is short:

| HF                                              | ours                                      |
|-------------------------------------------------|-------------------------------------------|
| electra.* (every model but a bare ElectraModel) | electra.*                                 |
| * (a bare ElectraModel)                         | * (ElectraModel names)                    |
| discriminator_predictions.dense_prediction      | discriminator_predictions.dense_1         |
| generator_lm_head.bias                          | generator_predictions.output_bias         |
| generator_lm_head.weight                        | (tied to word_embeddings: checked, dropped) |
| classifier.dense, classifier.out_proj (ForSequenceClassification) | the same, ElectraForSequenceClassification(hf_head=True) |
| classifier (ForTokenClassification)             | classifier (ElectraForTokenClassification) |
| qa_outputs (ForQuestionAnswering)               | qa.qa_outputs (ElectraForQuestionAnswering(simple=True)) |
| *.position_ids, *.token_type_ids buffers        | (dropped)                                 |

PyTorch Linear weights are [out, in], Paddle's [in, out]: every 2-D `.weight` but the embedding
tables is transposed.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Dict, Optional, Tuple

import numpy as np
import paddle

from ..config import ConfigError, ElectraConfig
from ..heads import ElectraForQuestionAnswering, ElectraForSequenceClassification, ElectraForTokenClassification
from ..io import CONFIG_NAME, VOCAB_NAME, CheckpointError, load_tensors, path_inside
from ..io.torch_pickle import load_torch_state_dict
from ..modeling import ElectraDiscriminator, ElectraGenerator, ElectraModel
from ..tokenizer import bundled_vocab_path
from .common import model_card, write_converted

logger = logging.getLogger(__name__)

HF_SAFETENSORS = "model.safetensors"
HF_BIN = "pytorch_model.bin"
_EMBEDDING_TABLES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
_HEAD_RENAMES = {
    "discriminator_predictions.dense_prediction.": "discriminator_predictions.dense_1.",
    "generator_lm_head.bias": "generator_predictions.output_bias",
    "qa_outputs.": "qa.qa_outputs.",
}
# config fields that describe HF's file, not the model
_HF_ONLY_FIELDS = ("architectures", "_name_or_path", "transformers_version", "torch_dtype")

# what each kind of HF model becomes (a head kind by the name of its task spec, paddle_electra.tasks): (our
# class, constructor settings saved in config.json)
CLASSES = {
    "discriminator": (ElectraDiscriminator, {}),
    "generator": (ElectraGenerator, {}),
    "backbone": (ElectraModel, {}),
    "seq-cls": (ElectraForSequenceClassification, {"classifier_head": "hf"}),
    "token-cls": (ElectraForTokenClassification, {}),
    "reading-comprehension": (ElectraForQuestionAnswering, {"qa_simple": True}),
}

# Published HFL configs that do not describe their weights, and what the weights need. The legal
# small generator's config.json gives a width that is not the generator's: PaddleNLP's check of its
# port loads it with transformers only after setting hidden_size 64, intermediate_size 256 and
# num_attention_heads 1 (the original's rule for a 64-wide generator, as our registry has it).
KNOWN_CONFIG_FIXES = {
    "hfl/chinese-legal-electra-small-generator": {"hidden_size": 64, "intermediate_size": 256,
                                                  "num_attention_heads": 1},
}


# --- reading an HF folder ---------------------------------------------------------------------
def _roots(folder: str):
    # an HF cache snapshot (models--org--name/snapshots/<rev>/) links its files to ../../blobs
    real = os.path.realpath(folder)
    parent = os.path.dirname(real)
    return [os.path.join(os.path.dirname(parent), "blobs")] if os.path.basename(parent) == "snapshots" else []


def hf_file(folder: str, name: str, what: str = "file") -> str:
    return path_inside(folder, name, what, roots=_roots(folder))


def _read_json(path: str, error=ConfigError):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def read_hf_weights(folder: str) -> Tuple[Dict[str, np.ndarray], str]:
    """The state dict of an HF repo folder (safetensors preferred; sharded files via their index),
    and the file it came from (for messages)."""
    for index_name in (HF_SAFETENSORS + ".index.json", HF_BIN + ".index.json"):
        if os.path.lexists(os.path.join(folder, index_name)):
            index = hf_file(folder, index_name)
            d = _read_json(index, CheckpointError)
            weight_map = d.get("weight_map") if isinstance(d, dict) else None
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index}: no \"weight_map\" object (tensor name -> shard file)")
            tensors = {}
            for shard in sorted(set(map(str, weight_map.values()))):
                tensors.update(_read_one(hf_file(folder, shard, f"shard listed in {index_name}")))
            return tensors, index
    for name in (HF_SAFETENSORS, HF_BIN):
        if os.path.lexists(os.path.join(folder, name)):
            path = hf_file(folder, name)
            return _read_one(path), path
    raise CheckpointError(f"{folder}: no {HF_SAFETENSORS} or {HF_BIN} (an HF Electra repo folder holds "
                          f"config.json and one of them)")


def _read_one(path: str) -> Dict[str, np.ndarray]:
    if path.endswith(".safetensors"):
        return load_tensors(path)
    return load_torch_state_dict(path)


def _kind(names, source: str) -> str:
    found = {kind for kind, prefix in (
        ("discriminator", "discriminator_predictions."), ("generator", ("generator_predictions.", "generator_lm_head.")),
        ("seq-cls", "classifier.out_proj."), ("reading-comprehension", "qa_outputs."))
        if any(k.startswith(prefix) for k in names)}
    if any(k.startswith("classifier.") for k in names) and "seq-cls" not in found:
        found.add("token-cls")
    if any(k.startswith(("sequence_summary.", "classifier.summary")) for k in names):
        raise CheckpointError(f"{source}: an HF ElectraForMultipleChoice (sequence_summary.*) has no counterpart "
                              f"here; convert its backbone by removing the head tensors, or fine-tune ours")
    if len(found) > 1:
        raise CheckpointError(f"{source}: holds the heads of several HF models ({', '.join(sorted(found))}); "
                              f"expected one HF Electra model")
    if found:
        return found.pop()
    if any(k.startswith("electra.") for k in names):
        return "electra"  # a backbone saved under a task model's prefix, without heads
    return "backbone"     # a bare HF ElectraModel


def hf_to_paddle(tensors: Dict[str, np.ndarray], source: str) -> Tuple[str, Dict[str, np.ndarray]]:
    """Rename and transpose an HF Electra state dict. Returns (kind, tensors), kind a key of
    CLASSES, the tensors in that class's state names."""
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


def _widths(tensors: Dict[str, np.ndarray], prefix: str) -> Dict[str, int]:
    """hidden_size and intermediate_size as the weights have them (Paddle [in, out] layout)."""
    q = tensors.get(prefix + "encoder.layer.0.attention.self.query.weight")
    ffn = tensors.get(prefix + "encoder.layer.0.intermediate.dense.weight")
    return {} if q is None or ffn is None else {"hidden_size": int(q.shape[1]), "intermediate_size": int(ffn.shape[1])}


def _patch_known_config(d: Dict, path: str, widths: Dict[str, int]) -> Dict:
    """Apply a KNOWN_CONFIG_FIXES entry when the config disagrees with the weights' widths and the
    fix makes it agree (the files do not always say which repo they are, so the fit decides)."""
    for repo, fix in KNOWN_CONFIG_FIXES.items():
        if widths and any(d.get(k) != v for k, v in widths.items()) and all(fix.get(k) == v for k, v in widths.items()):
            logger.warning("%s: patched the known error of %s's published config: %s (was %s)", path, repo,
                           ", ".join(f"{k}={v}" for k, v in fix.items()),
                           ", ".join(f"{k}={d.get(k)}" for k in fix))
            return {**d, **fix, "patched_config": {"repo": repo, "was": {k: d.get(k) for k in fix}}}
    return d


def read_hf_config(folder: str, embedding_size: Optional[int], widths: Optional[Dict[str, int]] = None
                   ) -> ElectraConfig:
    if not os.path.lexists(os.path.join(folder, CONFIG_NAME)):
        raise ConfigError(f"{folder}: no {CONFIG_NAME} (an HF Electra repo folder holds config.json)")
    path = hf_file(folder, CONFIG_NAME)
    d = _read_json(path)
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
    d = _patch_known_config(d, path, widths or {})
    d = {k: v for k, v in d.items() if k not in _HF_ONLY_FIELDS}
    return ElectraConfig.from_dict(d, source=path, embedding_size=embedding_size)


def _read_model(folder: str):
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"HF repo folder not found: {folder}")
    tensors, source = read_hf_weights(folder)
    kind, tensors = hf_to_paddle(tensors, source)
    prefix = "" if kind == "backbone" else "electra."
    word = tensors.get(prefix + "embeddings.word_embeddings.weight")
    if word is None or word.ndim != 2:
        raise CheckpointError(f"{source}: no word embeddings (electra.embeddings.word_embeddings.weight); "
                              f"is this an HF Electra model?")
    config = read_hf_config(folder, embedding_size=int(word.shape[1]), widths=_widths(tensors, prefix))
    if kind == "generator" and config.hidden_act != "gelu":
        # HF's generator head always applies erf-gelu; ours follows hidden_act (as the original)
        raise ConfigError(f"{os.path.join(folder, CONFIG_NAME)}: generator with hidden_act "
                          f"{config.hidden_act!r}: HF's head uses gelu regardless, the outputs would differ")
    cls, settings = CLASSES[kind]
    return kind, config.replace(extra={**config.extra, **settings, "architectures": [cls.__name__]}), tensors, source


# --- parity with transformers (optional: needs torch and transformers) -------------------------------
_HF_CLASSES = {"discriminator": "ElectraForPreTraining", "generator": "ElectraForMaskedLM", "backbone": "ElectraModel",
               "seq-cls": "ElectraForSequenceClassification",
               "token-cls": "ElectraForTokenClassification",
               "reading-comprehension": "ElectraForQuestionAnswering"}


def measure_parity(hf_folder: str, ours: str, kind: str, config: ElectraConfig, batch=(2, 16)) -> Dict:
    """Run the HF model (transformers) and the converted one on the same random tokens; the largest
    absolute difference of their outputs."""
    import torch         # here: optional dependencies, only for this measurement
    import transformers
    hf_config = transformers.ElectraConfig.from_pretrained(hf_folder)
    for k in ("hidden_size", "intermediate_size", "num_attention_heads"):  # a patched config
        setattr(hf_config, k, getattr(config, k))
    hf_model = getattr(transformers, _HF_CLASSES[kind]).from_pretrained(hf_folder, config=hf_config).eval()
    model = CLASSES[kind][0].from_pretrained(ours)
    model.eval()
    ids = np.random.RandomState(0).randint(1, config.vocab_size, size=batch)
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(ids))
    ref = [out.start_logits, out.end_logits] if kind == "reading-comprehension" else \
        [out.last_hidden_state if kind == "backbone" else out.logits]
    with paddle.no_grad():
        got = model(paddle.to_tensor(ids))
    got = list(got) if isinstance(got, (tuple, list)) else [got]
    diff = max(float(np.max(np.abs(r.numpy() - g.numpy()))) for r, g in zip(ref, got))
    return {"max_abs_diff": diff, "inputs": f"{batch[0]}x{batch[1]} random token ids",
            "reference": f"transformers {transformers.__version__} {_HF_CLASSES[kind]}"}


# --- conversion ---------------------------------------------------------------------------------------
def convert_hf(input_dir: str, output: str, generator_dir: Optional[str] = None, overwrite: bool = False,
               parity: bool = False) -> str:
    """Convert the HF repo folder `input_dir` (a discriminator, a generator, a bare ElectraModel or
    a task model) into `output`, a from_pretrained dir. With `generator_dir` (the matching HF
    generator) the output is a pretraining dir holding both, loadable by ElectraForPreTraining too.
    `output` is replaced only when it is empty, a previous model folder, or `overwrite`; never when
    it is or holds an input. `parity`: measure the outputs against transformers for the model card."""
    kind, config, tensors, source = _read_model(input_dir)
    vocab = hf_file(input_dir, VOCAB_NAME) if os.path.lexists(os.path.join(input_dir, VOCAB_NAME)) \
        else bundled_vocab_path()
    inputs = [input_dir, generator_dir]
    gen = None
    if generator_dir is not None:
        if kind != "discriminator":
            raise CheckpointError(f"{source}: --input must be the discriminator (HF ElectraForPreTraining) when "
                                  f"--generator is given; this file holds a {kind}")
        gkind, gconfig, gtensors, gsource = _read_model(generator_dir)
        if gkind != "generator":
            raise CheckpointError(f"{gsource}: --generator must be an HF ElectraForMaskedLM; this file holds a "
                                  f"{gkind}")
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
        gen, source = (gconfig, gtensors), f"{source} + {gsource}"

    def card(tmp: str) -> str:
        measured = {"discriminator": measure_parity(input_dir, tmp, kind, config)} if parity else {}
        if parity and gen is not None:
            measured["generator"] = measure_parity(generator_dir, tmp, "generator", gen[0])
        return model_card(source=f"Hugging Face transformers folder {input_dir}"
                          + (f" + generator {generator_dir}" if generator_dir else ""),
                          config=config, architecture=CLASSES[kind][0].__name__, with_generator=gen is not None,
                          parity=measured, patched=config.extra.get("patched_config")
                          or (gen and gen[0].extra.get("patched_config")))

    return write_converted(output, config, tensors, *(gen or (None, None)), vocab_file=vocab, source=source,
                           metadata={"converted_from": "hf"}, model_cls=CLASSES[kind][0], card=card,
                           inputs=inputs, overwrite=overwrite)

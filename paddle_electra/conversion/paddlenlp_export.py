"""`paddle-electra export paddlenlp`: write a from_pretrained dir in PaddleNLP 2.8's format.

PaddleNLP's ElectraModel builds its encoder from paddle.nn.TransformerEncoderLayer, so only the
names differ (both are Paddle: no transposes):

| ours                                        | PaddleNLP                               |
|---------------------------------------------|-----------------------------------------|
| embeddings.LayerNorm                        | embeddings.layer_norm                   |
| encoder.layer.N.attention.self.{query,key,value} | encoder.layers.N.self_attn.{q,k,v}_proj |
| encoder.layer.N.attention.output.dense      | encoder.layers.N.self_attn.out_proj     |
| encoder.layer.N.attention.output.LayerNorm  | encoder.layers.N.norm1                  |
| encoder.layer.N.intermediate.dense          | encoder.layers.N.linear1                |
| encoder.layer.N.output.dense                | encoder.layers.N.linear2                |
| encoder.layer.N.output.LayerNorm            | encoder.layers.N.norm2                  |
| discriminator_predictions.dense_1           | discriminator_predictions.dense_prediction |
| generator_predictions.LayerNorm             | generator_predictions.layer_norm        |
| generator_predictions.output_bias           | generator_lm_head_bias                  |

The output (`model_state.pdparams` + `config.json` + vocab) loads with
`paddlenlp.transformers.ElectraModel/ElectraDiscriminator/ElectraGenerator.from_pretrained(dir)`.
PaddleNLP's TransformerEncoderLayer makes its LayerNorms with epsilon 1e-5, but its
`_init_weights` resets every LayerNorm to `config.layer_norm_eps`, so 1e-12 is kept.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from typing import Dict

import numpy as np
import paddle

from ..io import (CONFIG_NAME, GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME, PDPARAMS_NAME, VOCAB_NAME,
                  WEIGHTS_NAME, CheckpointError, OutputError, OutputKind, output_dir)
from ..modeling_utils import check_state, read_weights, resolve_name
from ..config import ConfigError, ElectraConfig
from ..modeling import ElectraDiscriminator, ElectraGenerator, ElectraModel
from ..tokenizer import bundled_vocab_path
from .common import expected_shapes

_LAYER_RENAMES = [
    ("attention.self.query.", "self_attn.q_proj."),
    ("attention.self.key.", "self_attn.k_proj."),
    ("attention.self.value.", "self_attn.v_proj."),
    ("attention.output.dense.", "self_attn.out_proj."),
    ("attention.output.LayerNorm.", "norm1."),
    ("intermediate.dense.", "linear1."),
    ("output.dense.", "linear2."),
    ("output.LayerNorm.", "norm2."),
]
_HEAD_RENAMES = {
    "discriminator_predictions.dense_1.": "discriminator_predictions.dense_prediction.",
    "generator_predictions.LayerNorm.": "generator_predictions.layer_norm.",
    "generator_predictions.output_bias": "generator_lm_head_bias",
}
ARCHITECTURES = {"backbone": "ElectraModel", "discriminator": "ElectraDiscriminator", "generator": "ElectraGenerator"}
# PaddleNLP's ElectraConfig fields (paddlenlp/transformers/electra/configuration.py)
_PADDLENLP_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob",
                     "max_position_embeddings", "type_vocab_size", "initializer_range", "pad_token_id",
                     "layer_norm_eps")


def to_paddlenlp_name(name: str) -> str:
    """One of our state names (ElectraModel names, or with the `electra.` prefix) -> PaddleNLP's."""
    for old, new in _HEAD_RENAMES.items():
        if name.startswith(old):
            return new + name[len(old):]
    name = name.replace("embeddings.LayerNorm.", "embeddings.layer_norm.")
    m = re.match(r"^(.*)encoder\.layer\.(\d+)\.(.*)$", name)
    if m:
        prefix, idx, rest = m.groups()
        for old, new in _LAYER_RENAMES:
            if rest.startswith(old):
                return f"{prefix}encoder.layers.{idx}.{new}{rest[len(old):]}"
        raise KeyError(name)
    return name


def _paddlenlp_config(config: ElectraConfig, architecture: str) -> Dict:
    if config.hidden_act not in ("gelu", "relu"):
        # PaddleNLP passes hidden_act to paddle.nn.TransformerEncoderLayer, which looks it up in F
        raise CheckpointError(f"hidden_act {config.hidden_act!r} has no PaddleNLP equivalent (gelu, relu)")
    d = {k: getattr(config, k) for k in _PADDLENLP_FIELDS}
    d.update(architectures=[architecture], model_type="electra", tie_word_embeddings=True)
    return d


# a previous export: what export_paddlenlp writes
PADDLENLP_DIR = OutputKind("PaddleNLP export", (CONFIG_NAME, PDPARAMS_NAME),
                           (CONFIG_NAME, PDPARAMS_NAME, VOCAB_NAME, "tokenizer_config.json"))


def export_paddlenlp(input_path: str, output: str, model: str = "backbone", allow_pickle: bool = False,
                     overwrite: bool = False) -> str:
    """Write `output` (model_state.pdparams + config.json + vocab.txt + tokenizer_config.json) from
    a from_pretrained dir. `model`: backbone (ElectraModel), discriminator or generator."""
    if model not in ARCHITECTURES:
        raise ValueError(f"model must be one of {', '.join(ARCHITECTURES)}, got {model!r}")
    path = resolve_name(input_path)
    pretraining_dir = os.path.exists(os.path.join(path, GENERATOR_CONFIG_NAME))
    use_gen = model == "generator" and pretraining_dir
    cfg_file = os.path.join(path, GENERATOR_CONFIG_NAME if use_gen else CONFIG_NAME)
    weights_name = GENERATOR_WEIGHTS_NAME if use_gen else WEIGHTS_NAME
    tensors = read_weights(path, weights_name, allow_pickle)
    source = os.path.join(path, weights_name)
    word = next((v for k, v in tensors.items() if k.endswith("embeddings.word_embeddings.weight")), None)
    config = ElectraConfig.from_json_file(cfg_file, embedding_size=None if word is None else int(word.shape[1]))

    has_prefix = any(k.startswith("electra.") for k in tensors)
    if model == "backbone":
        if has_prefix:  # a discriminator's or generator's backbone
            tensors = {k[len("electra."):]: v for k, v in tensors.items() if k.startswith("electra.")}
        check_state(expected_shapes(ElectraModel, config), tensors, source)
    else:
        cls = ElectraDiscriminator if model == "discriminator" else ElectraGenerator
        check_state(expected_shapes(cls, config), tensors, f"{source} (as {cls.__name__})")

    state = {to_paddlenlp_name(k): paddle.to_tensor(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
    vocab = os.path.join(path, VOCAB_NAME)
    if not os.path.exists(vocab):
        vocab = bundled_vocab_path()
    with output_dir(output, PADDLENLP_DIR, inputs=[path], overwrite=overwrite) as tmp:
        paddle.save(state, os.path.join(tmp, PDPARAMS_NAME))
        with open(os.path.join(tmp, CONFIG_NAME), "w", encoding="utf-8") as f:
            json.dump(_paddlenlp_config(config, ARCHITECTURES[model]), f, indent=2)
            f.write("\n")
        shutil.copyfile(vocab, os.path.join(tmp, VOCAB_NAME))
        with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizer_class": "ElectraTokenizer", "do_lower_case": True}, f, indent=2)
            f.write("\n")
    return output


def add_arguments(p):
    p.add_argument("--input", required=True, help="a from_pretrained dir or a registered variant name")
    p.add_argument("--output", required=True, help="folder to write (PaddleNLP from_pretrained layout)")
    p.add_argument("--model", choices=sorted(ARCHITECTURES), default="backbone",
                   help="backbone -> paddlenlp ElectraModel (default); discriminator -> ElectraDiscriminator; "
                        "generator -> ElectraGenerator (from a pretraining dir or a standalone generator)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --output that is not a previous export (never the input)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read an input that only has model_state.pdparams (pickle: trusted files only)")


def run(args):
    try:
        out = export_paddlenlp(args.input, args.output, model=args.model, allow_pickle=args.allow_pickle,
                               overwrite=args.overwrite)
    except (CheckpointError, ConfigError, FileNotFoundError, OutputError) as e:
        print(f"paddle-electra export paddlenlp: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote PaddleNLP {ARCHITECTURES[args.model]} to {out} "
          f"(load with paddlenlp.transformers.{ARCHITECTURES[args.model]}.from_pretrained)")

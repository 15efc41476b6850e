"""What every converter shares: checking converted tensors against the models, the model card, and
writing the output folder atomically (a temporary folder, then a rename) without replacing what
the user did not ask to replace."""
from __future__ import annotations

import os
import shutil
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import paddle

from ..io import (CONFIG_NAME, GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME, MODEL_CARD_NAME, MODEL_DIR, VOCAB_NAME,
                  WEIGHTS_NAME, output_dir, save_tensors)
from ..modeling import ElectraDiscriminator, ElectraGenerator
from ..modeling_utils import check_state
from ..config import VARIANTS, ElectraConfig
from ..tokenizer import bundled_vocab_path


def expected_shapes(model_cls, config: ElectraConfig) -> Dict[str, tuple]:
    """Names and shapes of a model class's state dict (built as from_pretrained builds it from
    `config`, head settings included), without allocating its weights on a device."""
    with paddle.LazyGuard():  # parameters are described, not initialised
        model = model_cls._build(None, config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


LICENCE = "Apache-2.0 (HFL's Chinese-ELECTRA release; google-research/electra)"
CITATION = """@inproceedings{cui-etal-2020-revisiting,
  title = "Revisiting Pre-Trained Models for {C}hinese Natural Language Processing",
  author = "Cui, Yiming and Che, Wanxiang and Liu, Ting and Qin, Bing and Wang, Shijin and Hu, Guoping",
  booktitle = "Findings of the Association for Computational Linguistics: EMNLP 2020",
  year = "2020", pages = "657--668"
}
@inproceedings{clark2020electra,
  title = "{ELECTRA}: Pre-training Text Encoders as Discriminators Rather Than Generators",
  author = "Clark, Kevin and Luong, Minh-Thang and Le, Quoc V. and Manning, Christopher D.",
  booktitle = "ICLR", year = "2020"
}"""


def variant_of(config: ElectraConfig) -> str:
    """The registered size this config has (the files do not say which family: general, 180g, legal)."""
    for name, v in VARIANTS.items():
        d = v.discriminator
        if all(getattr(d, f) == getattr(config, f) for f in ("hidden_size", "num_hidden_layers", "embedding_size",
                                                             "intermediate_size", "vocab_size")):
            return f"{v.size} (the shape of {name} and its 180g / legal siblings)"
    return "none of the registered shapes"


def model_card(source: str, config: ElectraConfig, architecture: str, with_generator: bool,
               parity: Optional[Dict] = None, patched: Optional[Dict] = None, variant: Optional[str] = None) -> str:
    """README.md of a converted folder: source, variant, licence, citation, and the parity the
    converter measured (or that it measured none)."""
    lines = [f"# {architecture} (paddle-electra)", "",
             "Converted with `paddle-electra convert` for PaddlePaddle dygraph: load it with "
             f"`paddle_electra.{architecture}.from_pretrained(this_folder)`"
             + (" (a pretraining dir: ElectraGenerator and ElectraForPreTraining load it too)." if with_generator
                else "."), "",
             "| | |", "|---|---|",
             f"| source | {source} |",
             f"| variant | {variant or variant_of(config)} |",
             f"| size | {config.num_hidden_layers} layers, hidden {config.hidden_size}, embedding "
             f"{config.embedding_size}, {config.num_parameters() / 1e6:.1f}M backbone parameters |",
             f"| licence | {LICENCE} |"]
    if patched:
        lines.append(f"| config | patched: the published config of {patched['repo']} did not fit its weights "
                     f"(was {patched['was']}) |")
    for model, p in (parity or {}).items():
        lines.append(f"| parity ({model}) | max abs difference {p['max_abs_diff']:.2e} of the outputs vs "
                     f"{p['reference']} on {p['inputs']} (float32) |")
    if not parity:
        lines.append("| parity | not measured by this conversion (the converter's tests check it against the "
                     "reference to 1e-5; `convert hf --parity` measures it when transformers is installed) |")
    return "\n".join(lines + ["", "## Citation", "", "```bibtex", CITATION, "```", ""])


def write_converted(output: str, disc_config: ElectraConfig, disc: Dict[str, np.ndarray],
                    gen_config: Optional[ElectraConfig] = None, gen: Optional[Dict[str, np.ndarray]] = None,
                    vocab_file: Optional[str] = None, source: str = "checkpoint", metadata=None,
                    model_cls=ElectraDiscriminator, card: Optional[Callable[[str], str]] = None,
                    inputs: Sequence[Optional[str]] = (), overwrite: bool = False) -> str:
    """Write a from_pretrained dir: the model (`model_cls` state names, ElectraDiscriminator by
    default) in model.safetensors and, when given, the generator (ElectraGenerator names,
    embeddings included) in generator.safetensors, the vocab and the model card (`card(folder)`
    returns its text once the weights are written). Every tensor is checked against the model
    first; nothing is written unless all fit, and `output` is replaced by output_dir's rule."""
    check_state(expected_shapes(model_cls, disc_config), disc, f"{source} ({model_cls.__name__})")
    if gen is not None:
        check_state(expected_shapes(ElectraGenerator, gen_config), gen, f"{source} (generator)")
    with output_dir(output, MODEL_DIR, inputs, overwrite) as tmp:
        disc_config.to_json_file(os.path.join(tmp, CONFIG_NAME))
        save_tensors({k: v.astype(np.float32) for k, v in disc.items()}, os.path.join(tmp, WEIGHTS_NAME), metadata)
        if gen is not None:
            gen_config.to_json_file(os.path.join(tmp, GENERATOR_CONFIG_NAME))
            save_tensors({k: v.astype(np.float32) for k, v in gen.items()},
                         os.path.join(tmp, GENERATOR_WEIGHTS_NAME), metadata)
        shutil.copyfile(vocab_file or bundled_vocab_path(), os.path.join(tmp, VOCAB_NAME))
        if card is not None:
            with open(os.path.join(tmp, MODEL_CARD_NAME), "w", encoding="utf-8") as f:
                f.write(card(tmp))
    return output

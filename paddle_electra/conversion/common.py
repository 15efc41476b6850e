"""What every converter shares: checking converted tensors against the models, and writing the
output folder atomically (a temporary folder, then a rename)."""
from __future__ import annotations

import os
import shutil
from typing import Dict, Optional

import numpy as np
import paddle

from ..io import (CONFIG_NAME, GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME, VOCAB_NAME, WEIGHTS_NAME, atomic_dir,
                  save_tensors)
from ..modeling import ElectraDiscriminator, ElectraGenerator
from ..modeling_utils import check_state
from ..config import ElectraConfig
from ..tokenizer import bundled_vocab_path


def expected_shapes(model_cls, config: ElectraConfig) -> Dict[str, tuple]:
    """Names and shapes of a model class's state dict, without allocating its weights on a device."""
    with paddle.LazyGuard():  # parameters are described, not initialised
        model = model_cls(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def write_converted(output: str, disc_config: ElectraConfig, disc: Dict[str, np.ndarray],
                    gen_config: Optional[ElectraConfig] = None, gen: Optional[Dict[str, np.ndarray]] = None,
                    vocab_file: Optional[str] = None, source: str = "checkpoint", metadata=None) -> str:
    """Write a from_pretrained dir: the discriminator (ElectraDiscriminator state names) in
    model.safetensors and, when given, the generator (ElectraGenerator names, embeddings included)
    in generator.safetensors. Every tensor is checked against the model first; nothing is written
    unless all fit."""
    check_state(expected_shapes(ElectraDiscriminator, disc_config), disc, f"{source} (discriminator)")
    if gen is not None:
        check_state(expected_shapes(ElectraGenerator, gen_config), gen, f"{source} (generator)")
    with atomic_dir(output) as tmp:
        disc_config.to_json_file(os.path.join(tmp, CONFIG_NAME))
        save_tensors({k: v.astype(np.float32) for k, v in disc.items()}, os.path.join(tmp, WEIGHTS_NAME), metadata)
        if gen is not None:
            gen_config.to_json_file(os.path.join(tmp, GENERATOR_CONFIG_NAME))
            save_tensors({k: v.astype(np.float32) for k, v in gen.items()},
                         os.path.join(tmp, GENERATOR_WEIGHTS_NAME), metadata)
        shutil.copyfile(vocab_file or bundled_vocab_path(), os.path.join(tmp, VOCAB_NAME))
    return output

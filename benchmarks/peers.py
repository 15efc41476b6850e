"""The PyTorch peers the benchmarks run in the same process as ours: HF transformers' ELECTRA classes
holding our weights (Paddle Linear kernels are [in, out], torch's [out, in])."""
from __future__ import annotations

from typing import Dict

import numpy as np

_EMBEDDING_TABLES = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight")


def hf_config(cfg, **extra):
    import transformers
    return transformers.ElectraConfig(**{f: getattr(cfg, f) for f in (
        "vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
        "hidden_dropout_prob", "attention_probs_dropout_prob")}, **extra)


def load_into(module, state: Dict[str, np.ndarray], prefix: str = "electra."):
    """Copy our `prefix`-named tensors (e.g. the backbone, 'electra.') into an HF module whose names
    match ours under that prefix; every one of our tensors must land, and every HF tensor under the
    prefix must be given."""
    import torch
    own = {k: v for k, v in state.items() if k.startswith(prefix)}
    theirs = {k for k in module.state_dict() if k.startswith(prefix) and not k.endswith("position_ids")}
    if set(own) != theirs:
        raise RuntimeError(f"HF names differ: only ours {sorted(set(own) - theirs)[:5]}, "
                           f"only HF {sorted(theirs - set(own))[:5]}")
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v.T if v.ndim == 2 and not k.endswith(_EMBEDDING_TABLES)
                                                         else v)) for k, v in own.items()}
    module.load_state_dict(tensors, strict=False)


def autocast(bf16: bool):
    """The context a PyTorch peer's forward runs in: torch.autocast("cpu", dtype=torch.bfloat16) for its bf16
    arm (how PyTorch users run bf16 on CPU), else nothing."""
    import contextlib
    import torch
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

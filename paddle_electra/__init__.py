"""Chinese ELECTRA (HFL's released models) for PaddlePaddle dygraph."""
import importlib

__version__ = "0.1.0"

# Imported on first use, so `paddle-electra --help` and the tokenizer do not pay for importing paddle.
_EXPORTS = {
    "ElectraConfig": "config", "VARIANTS": "config", "get_variant": "config",
    "ElectraModel": "modeling", "ElectraDiscriminator": "modeling", "ElectraGenerator": "modeling",
    "ElectraForPreTraining": "modeling",
    "ElectraForSequenceClassification": "heads", "ElectraForTokenClassification": "heads",
    "ElectraForQuestionAnswering": "heads",
    "ElectraTokenizer": "tokenizer",
    "ElectraPredictor": "inference",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'paddle_electra' has no attribute {name!r}")

"""Chinese ELECTRA (HFL's released models) for PaddlePaddle dygraph."""
import importlib

from . import cpu as _cpu

__version__ = "0.1.0"

# The one process-wide setting made at import rather than in an entry point: Paddle's bundled MKL
# reads MKL_DEBUG_CPU_TYPE at its first GEMM, which can come before any entry point of ours runs
# (a library user's own code). On AMD it makes every GEMM ~3x faster; see paddle_electra/cpu.py.
_cpu.mkl_vendor_fix()

# Imported on first use, so `paddle-electra --help` and the tokenizer do not pay for importing paddle.
_EXPORTS = {
    "ElectraConfig": "config", "VARIANTS": "config", "get_variant": "config",
    "ElectraModel": "modeling", "ElectraDiscriminator": "modeling", "ElectraGenerator": "modeling",
    "ElectraForPreTraining": "modeling",
    "ElectraForSequenceClassification": "heads", "ElectraForTokenClassification": "heads",
    "ElectraForQuestionAnswering": "heads",
    "ElectraTokenizer": "tokenizer",
    "ElectraPredictor": "inference",
    "pipeline": "pipeline", "Pipeline": "pipeline",
}
__all__ = list(_EXPORTS)

# The one registration made at import: how every model's from_pretrained turns a registered name into
# a folder (registry, download). The loading base class cannot import `resolve` (it sits above it).
from . import modeling_utils as _modeling_utils, resolve as _resolve  # noqa: E402
_modeling_utils.set_resolver(_resolve.resolve)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        if name == _EXPORTS[name]:  # `pipeline`: the module (callable, see pipeline.py) that import bound here
            return module
        return getattr(module, name)
    raise AttributeError(f"module 'paddle_electra' has no attribute {name!r}")

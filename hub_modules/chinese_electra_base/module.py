"""PaddleHub module chinese-electra-base: HFL's Chinese ELECTRA-base discriminator on paddle_electra.

Everything is in paddle_electra.hub (one adapter for every size); this file names the model.
Weights: $PADDLE_ELECTRA_HOME/chinese-electra-base (see README.md).
"""
from paddlehub.module.module import moduleinfo
from paddlehub.module.nlp_module import TransformerModule

from paddle_electra.hub import ElectraHubModule


@moduleinfo(
    name="chinese-electra-base",
    version="3.0.0",
    summary="chinese-electra-base, 12-layer, 768-hidden, 12-heads, 768-embedding, 101.7M parameters "
    "(discriminator). Tasks: embeddings, seq-cls, token-cls, text-matching, reading-comprehension, "
    "text-regression. Paddle dygraph, on paddle-electra.",
    author="ymcui (model); paddle-electra (module)",
    author_email="",
    type="nlp/semantic_model",
    meta=TransformerModule,
)
class ChineseElectraBase(ElectraHubModule):
    variant = "chinese-electra-base"

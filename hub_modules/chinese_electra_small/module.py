"""PaddleHub module chinese-electra-small: HFL's Chinese ELECTRA-small discriminator on paddle_electra.

Everything is in paddle_electra.hub (one adapter for every size); this file names the model.
Weights: $PADDLE_ELECTRA_HOME/chinese-electra-small (see README.md).
"""
from paddlehub.module.module import moduleinfo
from paddlehub.module.nlp_module import TransformerModule

from paddle_electra.hub import ElectraHubModule


@moduleinfo(
    name="chinese-electra-small",
    version="3.0.0",
    summary="chinese-electra-small, 12-layer, 256-hidden, 4-heads, 128-embedding, 12.3M parameters "
    "(discriminator). Tasks: embeddings, seq-cls, token-cls, text-matching, reading-comprehension, "
    "text-regression. Paddle dygraph, on paddle-electra.",
    author="ymcui (model); paddle-electra (module)",
    author_email="",
    type="nlp/semantic_model",
    meta=TransformerModule,
)
class ChineseElectraSmall(ElectraHubModule):
    variant = "chinese-electra-small"

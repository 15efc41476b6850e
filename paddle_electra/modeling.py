"""ELECTRA in Paddle dygraph, numerically the same as the original TensorFlow code.

Read top to bottom: embeddings -> one transformer layer -> encoder -> ElectraModel
(the backbone) -> the two pretraining heads -> the models users load.

Sub-layer names mirror the TF variable scopes of the released checkpoints
(`electra/encoder/layer_3/attention/self/query/kernel` is
`electra.encoder.layer.3.attention.self.query.weight` here), so converting a
checkpoint is a name table (see paddle_electra/conversion). TF kernels are
[in, out], as Paddle's Linear weights are: no transposes from TF.

Execution modes are flags that the forwards below read (as nanoGPT's flash/manual switch), set with
`set_execution_modes(model, fast_cpu_kernels=..., recompute=..., bf16_gemm=...)`; all act only in dygraph training
(`self.training` and `paddle.in_dynamic_mode()`), so evaluation and export run the plain code.
Attention is one function, `attention(q, k, v, mask, dropout, matmul, softmax)`; the self-attention layer picks an
implementation from ATTENTION_FUNCTIONS by name ("eager", "fast_cpu") inside its forward.

Every path a forward runs on, and where it lives:
- dygraph, plain: this file (`eager_attention`), training and evaluation alike;
- dygraph, `fast_cpu_kernels`: Linear takes fast_cpu.py's PyLayers (GEMV bias gradients), attention
  `fast_cpu_attention` here (one head at a time, no head transposes); the same results up to float
  rounding, faster CPU training;
- compiled kernels, same flag: GELU, LayerNorm, Dropout and fast_cpu_attention's masked softmax run
  cpu_kernels.py (C++ in paddle_electra/csrc/cpu_kernels.cc, built on first use; Paddle's kernels where
  they do not build);
- `bf16_gemm` (CPU `--amp bf16`): every Linear (the heads' column blocks of fast_cpu_attention too), the
  attention products and the tied LM head run bf16_linear.py's ops (factors rounded to bf16 for oneDNN
  GEMMs with fp32 accumulation, fp32 output, gradients and weights; C++ in
  paddle_electra/csrc/bf16_linear.cc, built on first use) on CPUs with native bf16; fp32 elsewhere;
- `recompute`: each encoder layer's activations are recomputed in the backward pass (ElectraEncoder,
  Paddle's fleet recompute);
- AMP (GPU): pretraining's `--amp bf16|fp16` (paddle_electra/pretraining/trainer.py) runs these forwards
  under paddle.amp.auto_cast (O2: the model kept in half precision); nothing here changes;
- Paddle Inference fp32 / bf16 (oneDNN on CPU) and GPU (optionally TensorRT): the static graph of the
  plain path, exported by paddle_electra/inference/static_export.py and run by inference/paddle.py;
- ONNX plain / fused / int8: that graph converted by paddle2onnx, rewritten for ONNX Runtime's
  attention fusion and quantized in inference/rewrites.py, run by inference/onnxruntime.py;
- OpenVINO: the plain ONNX graph, run by inference/openvino.py.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.distributed.fleet.utils import recompute as _recompute  # fleet comes with `import paddle`

from . import bf16_linear, cpu_kernels, fast_cpu
from .io import CONFIG_NAME, GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME, WEIGHTS_NAME
from .modeling_utils import PretrainedMixin, PretrainingPairMixin
from .config import ElectraConfig


def _init(config: ElectraConfig):
    # BERT/ELECTRA initialise every kernel and embedding from a truncated normal (0.02).
    return paddle.ParamAttr(initializer=nn.initializer.TruncatedNormal(std=config.initializer_range))


def _training_fast_path(layer) -> bool:
    return layer.fast_cpu_kernels and layer.training and paddle.in_dynamic_mode()


def _bf16_path(layer, x) -> bool:
    return layer.bf16_gemm and layer.training and paddle.in_dynamic_mode() and bf16_linear.usable_for(x)


def _matmul(layer, x, y, transpose_y=False):
    """paddle.matmul(x, y, transpose_y=...), with bf16 GEMMs when `layer`'s `bf16_gemm` mode runs."""
    if _bf16_path(layer, x):
        return bf16_linear.matmul(x.contiguous(), y.contiguous(), transpose_y)
    return paddle.matmul(x, y, transpose_y=transpose_y)


class Linear(nn.Linear):
    """nn.Linear (same parameters) whose dygraph training step can take fast_cpu's GEMV bias gradient,
    or bf16 GEMMs (`bf16_gemm`)."""
    fast_cpu_kernels = False
    bf16_gemm = False

    def forward(self, x):
        return self.linear(x, self.weight, self.bias)

    def linear(self, x, weight, bias):
        """x weight + bias the way this layer runs now: bf16 GEMMs, fast_cpu's or Paddle's Linear; for this
        layer's own parameters or a block of their columns (fast_cpu_attention's heads)."""
        if bias is not None and _bf16_path(self, x):
            return bf16_linear.linear(x, weight, bias)
        if _training_fast_path(self):
            return fast_cpu.linear(x, weight, bias)
        return F.linear(x, weight, bias)


def _linear(config, n_in, n_out):
    return Linear(n_in, n_out, weight_attr=_init(config))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters) whose dygraph training step can take the compiled CPU kernel."""
    fast_cpu_kernels = False

    def forward(self, x):
        if _training_fast_path(self) and self.weight is not None and self.bias is not None \
                and cpu_kernels.usable_for(x):
            return cpu_kernels.layer_norm(x, self.weight, self.bias, self._epsilon)
        return super().forward(x)


def _layer_norm(config, width):
    # The original uses epsilon 1e-12; Paddle's default (1e-5) changes the outputs.
    return LayerNorm(width, epsilon=config.layer_norm_eps)


class Dropout(nn.Dropout):
    """nn.Dropout (upscale_in_train) whose dygraph training step can take the compiled CPU kernel
    (its own generator, seeded from Paddle's: the masks differ from Paddle's, paddle.seed repeats them)."""
    fast_cpu_kernels = False

    def forward(self, x):
        if _training_fast_path(self) and 0 < self.p and self.mode == "upscale_in_train" and self.axis is None \
                and cpu_kernels.usable_for(x):
            return cpu_kernels.dropout(x, self.p)
        return super().forward(x)


class GELU(nn.Layer):
    """GELU in the erf form, as the original; its dygraph training step can take the compiled CPU kernel."""
    fast_cpu_kernels = False

    def forward(self, x):
        if _training_fast_path(self) and cpu_kernels.usable_for(x):
            return cpu_kernels.gelu(x)
        return F.gelu(x, approximate=False)


def activation(name: str):
    if name == "gelu":
        return GELU()
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate=True)
    return F.relu


def _default_ids(input_ids, token_type_ids=None, position_ids=None):
    """Segment 0 and positions 0..L-1 where the caller gave none (both embedding blocks)."""
    if token_type_ids is None:
        token_type_ids = paddle.zeros_like(input_ids)
    if position_ids is None:
        position_ids = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0)
    return token_type_ids, position_ids


class ElectraEmbeddings(nn.Layer):
    """word + position + token type (all of width E), LayerNorm, dropout. TF scope `electra/embeddings`;
    the generator uses this same block (the original shares it whole)."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        E = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, E, weight_attr=_init(config))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, E, weight_attr=_init(config))
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, E, weight_attr=_init(config))
        self.LayerNorm = _layer_norm(config, E)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        token_type_ids, position_ids = _default_ids(input_ids, token_type_ids, position_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) \
            + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


GDES_TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


class GDESEmbeddings(nn.Layer):
    """The discriminator's embeddings under gradient-disentangled embedding sharing (DeBERTa-v3, He et
    al., ICLR 2023): each table is the generator's table with stop-gradient plus the discriminator's
    own delta (`<table>_delta`, zero at the start), then the discriminator's own LayerNorm and
    dropout. The RTD loss trains the deltas and never reaches the generator's tables. Not in the
    original, which shares the whole block (ElectraEmbeddings). The generator's block is held by
    reference, not as a sub-layer: it belongs to the generator."""

    def __init__(self, config: ElectraConfig, shared: ElectraEmbeddings):
        super().__init__()
        self._shared = (shared,)  # a tuple: not registered, so its parameters are named under the generator
        for t in GDES_TABLES:
            w = getattr(shared, t).weight
            setattr(self, t + "_delta", self.create_parameter(
                w.shape, dtype=w.dtype, default_initializer=nn.initializer.Constant(0.0)))
        self.LayerNorm = _layer_norm(config, config.embedding_size)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def table(self, name: str):
        """The discriminator's table `name`: the generator's (no gradient) + the delta."""
        return getattr(self._shared[0], name).weight.detach() + getattr(self, name + "_delta")

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        token_type_ids, position_ids = _default_ids(input_ids, token_type_ids, position_ids)
        x = F.embedding(input_ids, self.table("word_embeddings")) \
            + F.embedding(position_ids, self.table("position_embeddings")) \
            + F.embedding(token_type_ids, self.table("token_type_embeddings"))
        return self.dropout(self.LayerNorm(x))


def attention(q, k, v, mask, dropout, matmul=paddle.matmul, softmax=None):
    """softmax(q k^T / sqrt(d) + mask) v, for q, k, v [..., S, d] and an additive mask that broadcasts to the
    scores [..., S, S]: the attention math of every path, whichever way the heads are cut (ATTENTION_FUNCTIONS).
    The two products by `matmul` (paddle.matmul's signature: the layer's bf16 GEMMs in that mode), the
    probabilities by `softmax(scores, mask, scale)` where one is given (cpu_kernels.masked_softmax, its mask
    [B, S]). The scale goes on the scores, in the original's order; rewrites._fusable matches this op sequence
    in the exported ONNX graph (test_inference_engines.py::test_the_rewrites_match_the_op_order_of_modeling
    fails when it changes)."""
    scores, scale = matmul(q, k, transpose_y=True), 1.0 / math.sqrt(q.shape[-1])
    probs = F.softmax(scores * scale + mask, axis=-1) if softmax is None else softmax(scores, mask, scale)
    return matmul(dropout(probs), v)


def eager_attention(layer, hidden, additive_mask):
    """All heads at once: [B, S, H] -> [B, heads, S, d] by reshape and transpose, and back."""
    def split(x):
        return x.reshape([0, 0, layer.num_heads, layer.head_dim]).transpose([0, 2, 1, 3])
    ctx = attention(split(layer.query(hidden)), split(layer.key(hidden)), split(layer.value(hidden)), additive_mask,
                    layer.dropout, layer.matmul)
    return ctx.transpose([0, 2, 1, 3]).reshape([0, 0, layer.num_heads * layer.head_dim])


def fast_cpu_attention(layer, hidden, additive_mask):
    """One head at a time from its own column block of the query, key and value kernels (each kernel's
    Linear.linear: fast_cpu's GEMV bias gradient, or the bf16 GEMMs in that mode): no head transposes,
    forward or backward; the heads concatenated once. The probabilities by the compiled masked softmax
    (the mask [B, 1, 1, S] as [B, S]) where it runs, else the mask is expanded to [B, S, S] once for all
    heads (Paddle's CPU add broadcasts it slowly)."""
    d = layer.head_dim
    if cpu_kernels.usable_for(hidden):
        mask, softmax = additive_mask.reshape([additive_mask.shape[0], additive_mask.shape[-1]]), \
            cpu_kernels.masked_softmax
    else:
        mask, softmax = additive_mask.squeeze(1), None
        mask = mask.expand([mask.shape[0], hidden.shape[1], mask.shape[2]])
    outs = []
    for i in range(layer.num_heads):
        cols = slice(i * d, (i + 1) * d)
        q, k, v = (kernel.linear(hidden, kernel.weight[:, cols], kernel.bias[cols])
                   for kernel in (layer.query, layer.key, layer.value))
        outs.append(attention(q, k, v, mask, layer.dropout, layer.matmul, softmax))
    return outs[0] if len(outs) == 1 else paddle.concat(outs, axis=-1)


# the self-attention implementations, by name (HF's ALL_ATTENTION_FUNCTIONS): (layer, hidden, mask) -> context
ATTENTION_FUNCTIONS = {"eager": eager_attention, "fast_cpu": fast_cpu_attention}


class ElectraSelfAttention(nn.Layer):  # TF scope attention/self
    fast_cpu_kernels = False
    bf16_gemm = False

    def __init__(self, config: ElectraConfig):
        super().__init__()
        H = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = H // self.num_heads
        self.query = _linear(config, H, H)
        self.key = _linear(config, H, H)
        self.value = _linear(config, H, H)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, hidden, additive_mask):
        implementation = "fast_cpu" if _training_fast_path(self) else "eager"
        return ATTENTION_FUNCTIONS[implementation](self, hidden, additive_mask)

    def matmul(self, x, y, transpose_y=False):
        return _matmul(self, x, y, transpose_y)


class ElectraDenseLayerNorm(nn.Layer):
    """dense -> dropout -> residual add -> LayerNorm (post-LN); TF scopes attention/output and output."""

    def __init__(self, config: ElectraConfig, n_in: int):
        super().__init__()
        self.dense = _linear(config, n_in, config.hidden_size)
        self.LayerNorm = _layer_norm(config, config.hidden_size)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class ElectraAttention(nn.Layer):
    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.self = ElectraSelfAttention(config)
        self.output = ElectraDenseLayerNorm(config, config.hidden_size)

    def forward(self, hidden, additive_mask):
        return self.output(self.self(hidden, additive_mask), hidden)


class ElectraIntermediate(nn.Layer):
    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)  # no dropout after it, as the original

    def forward(self, x):
        return self.act(self.dense(x))


class ElectraLayer(nn.Layer):  # TF scope encoder/layer_N
    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.attention = ElectraAttention(config)
        self.intermediate = ElectraIntermediate(config)
        self.output = ElectraDenseLayerNorm(config, config.intermediate_size)

    def forward(self, hidden, additive_mask):
        attn = self.attention(hidden, additive_mask)
        return self.output(self.intermediate(attn), attn)


class ElectraEncoder(nn.Layer):
    recompute = False

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.layer = nn.LayerList([ElectraLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden, additive_mask, output_hidden_states=False):
        recompute = self.recompute and self.training and paddle.in_dynamic_mode()
        states = [hidden]
        for layer in self.layer:
            hidden = _recompute(layer, hidden, additive_mask) if recompute else layer(hidden, additive_mask)
            states.append(hidden)
        return (hidden, states) if output_hidden_states else hidden


_FAST_CPU_LAYERS = (Linear, ElectraSelfAttention, LayerNorm, GELU, Dropout)  # the layers reading fast_cpu_kernels


def set_execution_modes(model: nn.Layer, fast_cpu_kernels: Optional[bool] = None,
                        recompute: Optional[bool] = None, bf16_gemm: Optional[bool] = None) -> nn.Layer:
    """Set the execution flags (see the module docstring) on every layer of `model` that reads them;
    None leaves a flag as it is. Parameters, names and weights are untouched."""
    for layer in model.sublayers(include_self=True):
        if fast_cpu_kernels is not None and isinstance(layer, _FAST_CPU_LAYERS):
            layer.fast_cpu_kernels = bool(fast_cpu_kernels)
        if recompute is not None and isinstance(layer, ElectraEncoder):
            layer.recompute = bool(recompute)
        if bf16_gemm is not None and hasattr(layer, "bf16_gemm"):  # the layers reading it declare it
            layer.bf16_gemm = bool(bf16_gemm)
    return model


def additive_attention_mask(attention_mask, input_ids, dtype):
    """[B, S] with 1 for real tokens -> [B, 1, 1, S] holding 0 or -10000 (the original's constant)."""
    if attention_mask is None:
        attention_mask = paddle.ones_like(input_ids)
    mask = attention_mask.astype(dtype).unsqueeze([1, 2])
    return (1.0 - mask) * -10000.0


class ElectraModel(PretrainedMixin, nn.Layer):
    """The backbone: embeddings -> (embeddings_project when E != H) -> encoder. No pooler: users take
    `sequence_output[:, 0]`, as the original does."""

    def __init__(self, config: ElectraConfig, embeddings: Optional[ElectraEmbeddings] = None):
        super().__init__()
        self.config = config
        # A generator inside ElectraForPreTraining passes the discriminator's block to share it.
        self.embeddings = embeddings if embeddings is not None else ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = _linear(config, config.embedding_size, config.hidden_size)
        self.encoder = ElectraEncoder(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None,
                output_hidden_states=False):
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        if hasattr(self, "embeddings_project"):
            x = self.embeddings_project(x)
        mask = additive_attention_mask(attention_mask, input_ids, x.dtype)
        return self.encoder(x, mask, output_hidden_states)

    def _adapt_weights(self, weights):
        # a checkpoint with heads (discriminator, generator, task head): keep its `electra.` backbone
        if any(k.startswith("electra.") for k in weights):
            return {k[len("electra."):]: v for k, v in weights.items() if k.startswith("electra.")}
        return weights


class DiscriminatorPredictions(nn.Layer):
    """TF scope discriminator_predictions: dense(H->H, act) -> dense_1(H->1)."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.hidden_size)
        self.dense_1 = _linear(config, config.hidden_size, 1)
        self.act = activation(config.hidden_act)

    def forward(self, hidden):
        return self.dense_1(self.act(self.dense(hidden))).squeeze(-1)


class GeneratorPredictions(nn.Layer):
    """TF scope generator_predictions: dense(G->E, gelu) -> LayerNorm -> tied LM head + output_bias."""
    bf16_gemm = False

    def __init__(self, config: ElectraConfig):
        super().__init__()
        self.dense = _linear(config, config.hidden_size, config.embedding_size)
        self.LayerNorm = _layer_norm(config, config.embedding_size)
        self.output_bias = self.create_parameter([config.vocab_size], is_bias=True)
        self.act = activation(config.hidden_act)

    def forward(self, hidden, word_embeddings):
        h = self.LayerNorm(self.act(self.dense(hidden)))
        return _matmul(self, h, word_embeddings, transpose_y=True) + self.output_bias


def gather_positions(sequence, positions):
    """sequence [B, S, H], positions [B, P] -> [B, P, H] (the original's gather_positions)."""
    B, S = sequence.shape[0], sequence.shape[1]
    flat = (positions + paddle.arange(B, dtype=positions.dtype).unsqueeze(1) * S).reshape([-1])
    out = paddle.gather(sequence.reshape([B * S, -1]), flat)
    return out.reshape([B, positions.shape[1], -1])


class ElectraDiscriminator(PretrainedMixin, nn.Layer):
    """Replaced-token detection: logits [B, S] (> 0 means "replaced")."""

    def __init__(self, config: ElectraConfig, embeddings: Optional[ElectraEmbeddings] = None):
        super().__init__()
        self.config = config
        self.electra = ElectraModel(config, embeddings)
        self.discriminator_predictions = DiscriminatorPredictions(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None):
        return self.discriminator_predictions(self.electra(input_ids, token_type_ids, attention_mask, position_ids))


class ElectraGenerator(PretrainedMixin, nn.Layer):
    """Masked LM whose output layer is tied to the word embeddings: logits [B, S, V], or
    [B, P, V] for `masked_positions` [B, P] only (pretraining needs no logits elsewhere).
    Its backbone is called `electra`, as in HF, and maps from the TF scope `generator`."""

    def __init__(self, config: ElectraConfig, embeddings: Optional[ElectraEmbeddings] = None):
        super().__init__()
        self.config = config
        self.electra = ElectraModel(config, embeddings)
        self.generator_predictions = GeneratorPredictions(config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None,
                masked_positions=None):
        hidden = self.electra(input_ids, token_type_ids, attention_mask, position_ids)
        if masked_positions is not None:
            hidden = gather_positions(hidden, masked_positions)
        return self.generator_predictions(hidden, self.electra.embeddings.word_embeddings.weight)

    @classmethod
    def _files(cls, path):
        # the generator of a pretraining dir lives in generator.*; a standalone one in model.*
        if os.path.exists(os.path.join(path, GENERATOR_CONFIG_NAME)):
            return GENERATOR_CONFIG_NAME, GENERATOR_WEIGHTS_NAME
        return CONFIG_NAME, WEIGHTS_NAME


class ElectraForPreTraining(PretrainingPairMixin, nn.Layer):
    """Generator and discriminator with the whole embeddings block shared, as the original
    (`embedding_sharing="original"`), or with gradient-disentangled sharing ("gdes", GDESEmbeddings:
    the generator owns the block, the discriminator adds its own deltas and LayerNorm; with the same
    seed both start from the same weights and the same outputs). The RTD objective (masking,
    sampling, losses) lives in paddle_electra.pretraining."""

    EMBEDDING_SHARING = ("original", "gdes")

    def __init__(self, config: ElectraConfig, generator_config: ElectraConfig, embedding_sharing: str = "original"):
        super().__init__()
        if (generator_config.embedding_size, generator_config.vocab_size) != (config.embedding_size, config.vocab_size):
            raise ValueError("generator and discriminator must have the same embedding_size and vocab_size "
                             "to share embeddings")
        if embedding_sharing not in self.EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {self.EMBEDDING_SHARING}, got {embedding_sharing!r}")
        self.config, self.generator_config = config, generator_config
        self.embedding_sharing = embedding_sharing
        if embedding_sharing == "gdes":
            shared = ElectraEmbeddings(config)  # drawn first, as the original's shared block is
            self.discriminator = ElectraDiscriminator(config, embeddings=GDESEmbeddings(config, shared))
            self.generator = ElectraGenerator(generator_config, embeddings=shared)
        else:
            self.discriminator = ElectraDiscriminator(config)
            self.generator = ElectraGenerator(generator_config, embeddings=self.discriminator.electra.embeddings)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None):
        """Both models on the same input (for inspection); training goes through pretraining.objective (RTDModule)."""
        return (self.generator(input_ids, token_type_ids, attention_mask, position_ids),
                self.discriminator(input_ids, token_type_ids, attention_mask, position_ids))

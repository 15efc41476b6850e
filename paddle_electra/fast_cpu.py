"""Faster training kernels for Paddle on CPU, which modeling.py's Linear and ElectraSelfAttention run
in dygraph training when their `fast_cpu_kernels` flag is set (modeling.set_execution_modes; the
trainers set it on CPU). Parameter names, weights and results stay the same up to float rounding.

What costs time in Paddle's CPU training step besides the GEMMs (measured with the profiler on
ELECTRA-small, batch 32 x 128, see docs/pretraining.md):
- the bias gradient of every Linear: Paddle reduces the broadcast add's gradient over the 4096 rows
  with a slow generic reduction (~30 ms per [4096, 1024] on one core, more than the layer's GEMM
  gradient); `_LinearFn` computes it as ones[1, N] @ dY, a GEMV, in a PyLayer with an explicit
  backward. Its forward is one `paddle.addmm` (the GEMM adds the bias as it writes its output):
  matmul + broadcast add took 14.9 ms on [4096, 256] @ [256, 1024], addmm 12.1 (AMD EPYC, 2 threads);
- the head split and merge of attention: reshape + transpose([0, 2, 1, 3]) makes strided copies in
  forward and backward; computing each head with its own column block of the query/key/value
  kernels ([B, L, H] @ [H, d] -> [B, L, d]) needs no transpose, and the heads are concatenated once.
  On the discriminator's attention this halves the cost (230 -> 110 ms per layer, one core).
"""
from __future__ import annotations

import math

import paddle
import paddle.nn.functional as F
from paddle.autograd import PyLayer


class _LinearFn(PyLayer):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        # addmm: the GEMM adds the bias as it writes (beta = 1), the same sums as matmul + bias
        y = paddle.addmm(bias, x.reshape([-1, x.shape[-1]]), weight)
        return y.reshape([*x.shape[:-1], weight.shape[-1]])

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensor()
        n_out = dy.shape[-1]
        dy2 = dy.reshape([-1, n_out])
        x2 = x.reshape([-1, x.shape[-1]])
        dx = paddle.matmul(dy, weight, transpose_y=True) if not x.stop_gradient else None
        dw = paddle.matmul(x2, dy2, transpose_x=True)
        db = paddle.matmul(paddle.ones([1, dy2.shape[0]], dy.dtype), dy2).reshape([n_out])
        return dx, dw, db


class _LinearNoBiasFn(PyLayer):
    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return paddle.matmul(x, weight)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensor()
        dy2 = dy.reshape([-1, dy.shape[-1]])
        dx = paddle.matmul(dy, weight, transpose_y=True) if not x.stop_gradient else None
        return dx, paddle.matmul(x.reshape([-1, x.shape[-1]]), dy2, transpose_x=True)


def linear(x, weight, bias=None):
    if bias is None:
        return _LinearNoBiasFn.apply(x, weight)
    return _LinearFn.apply(x, weight, bias)


def attention(hidden, additive_mask, query, key, value, num_heads: int, dropout):
    """ElectraSelfAttention's forward without head transposes (see the module docstring): `query`,
    `key`, `value` are its Linear layers, `additive_mask` [B, 1, 1, S]."""
    d = query.weight.shape[1] // num_heads
    scale = 1.0 / math.sqrt(d)
    # [B, 1, 1, S] -> [B, S, S], made once for the heads: Paddle's CPU add broadcasting [B, 1, S] over
    # [B, S, S] scores took 2.4 ms for 32 x 128 (AMD EPYC), the add of the expanded mask 0.2 ms
    mask = additive_mask.squeeze(1)
    mask = mask.expand([mask.shape[0], hidden.shape[1], mask.shape[2]])
    outs = []
    for i in range(num_heads):
        cols = slice(i * d, (i + 1) * d)
        q = linear(hidden, query.weight[:, cols], query.bias[cols])
        k = linear(hidden, key.weight[:, cols], key.bias[cols])
        v = linear(hidden, value.weight[:, cols], value.bias[cols])
        # (q k^T) * scale in the original's order: the scale goes on the scores, not on q
        scores = paddle.matmul(q, k, transpose_y=True) * scale + mask
        outs.append(paddle.matmul(dropout(F.softmax(scores, axis=-1)), v))
    return outs[0] if num_heads == 1 else paddle.concat(outs, axis=-1)

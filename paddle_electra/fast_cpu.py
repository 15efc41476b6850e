"""Faster training kernels for Paddle on CPU: PyLayers with an explicit backward, which modeling.py's
Linear and its "fast_cpu" attention (modeling.fast_cpu_attention, one head at a time from column blocks
of the Q/K/V kernels) run in dygraph training when their `fast_cpu_kernels` flag is set
(modeling.set_execution_modes; the trainers set it on CPU). Parameter names, weights and results stay
the same up to float rounding.

What they save: Paddle reduces the bias gradient of every Linear (a broadcast add's gradient over all
rows) with a slow generic reduction; `_LinearFn` computes it as ones[1, N] @ dY, a GEMV. Its forward is
one `paddle.addmm` (the GEMM adds the bias as it writes its output) instead of matmul + broadcast add.
The measurements are in docs/pretraining.md ("fast_cpu.py", "Broadcast adds").
"""
from __future__ import annotations

import paddle
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

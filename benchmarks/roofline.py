"""The fp32 roofline of the training benchmarks: the GEMM rate of this machine (a 2048^3 matmul, all
cores, in Paddle) and the GEMM FLOPs of ELECTRA encoders, so that a benchmark can say the shortest
step any implementation could take here (model GEMM FLOPs per step / the GEMM rate)."""
from __future__ import annotations

import time


def gemm_peak(seconds=3.0):
    """FLOP/s of the best 2048^3 fp32 matmul over `seconds` (all cores)."""
    import paddle
    from paddle_electra.runtime import configure_process
    configure_process("cpu")
    n = 2048
    a, b = paddle.randn([n, n]), paddle.randn([n, n])
    paddle.matmul(a, b).numpy()
    best, t_end = 0.0, time.time() + seconds
    while time.time() < t_end:
        t0 = time.perf_counter()
        paddle.matmul(a, b).numpy()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def encoder_flops(c, B, L):
    """GEMM FLOPs of one forward pass of encoder config `c` over B x L tokens: the layers' projections
    and feed-forward, the attention's two batched matmuls, the embedding projection."""
    H, I, T = c.hidden_size, c.intermediate_size, B * L
    per_layer = 2 * T * (4 * H * H + 2 * H * I) + 2 * 2 * B * L * L * H
    proj = 2 * T * c.embedding_size * H if c.embedding_size != H else 0
    return c.num_hidden_layers * per_layer + proj

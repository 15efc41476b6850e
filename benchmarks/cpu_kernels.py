"""Per-call time of paddle_electra's compiled CPU kernels (paddle_electra/cpu_kernels.py) against
Paddle's own and PyTorch's, forward and backward, at ELECTRA-small's training shapes (batch 32 x 128:
GELU on [4096, 1024], LayerNorm on [4096, 256], dropout on [4096, 256] and on the attention
probabilities [32, 128, 128]); the engines take turns, the best of `--repeats` timings is kept.

    python benchmarks/cpu_kernels.py [--threads 2] [--rounds 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import time

from paddle_electra.cpu import machine_record
from paddle_electra.runtime import configure_process


def best_ms(fn, rounds, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t) / rounds * 1e3)
    return round(best, 3)


def paddle_cases(ours: bool):
    """{kernel: (forward, forward + backward)} for Paddle's kernels or ours."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F
    from paddle_electra import cpu_kernels
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return paddle.to_tensor(rng.standard_normal(shape).astype("float32"), stop_gradient=False)
    x_ffn, x_h, x_att = tensor(4096, 1024), tensor(4096, 256), tensor(32, 128, 128)
    w, b = tensor(256), tensor(256)
    gelu = cpu_kernels.gelu if ours else (lambda x: F.gelu(x, approximate=False))
    layer_norm = (lambda x: cpu_kernels.layer_norm(x, w, b, 1e-12)) if ours else \
        (lambda x: F.layer_norm(x, [256], w, b, 1e-12))
    dropout = (lambda x: cpu_kernels.dropout(x, 0.1)) if ours else (lambda x: F.dropout(x, 0.1, training=True))
    cases = {}
    for name, fn, x, inputs in (("gelu [4096,1024]", gelu, x_ffn, [x_ffn]), ("layer_norm [4096,256]", layer_norm, x_h,
                                [x_h, w, b]), ("dropout [4096,256]", dropout, x_h, [x_h]),
                                ("dropout [32,128,128]", dropout, x_att, [x_att])):
        dy = paddle.ones_like(x)
        cases[name] = (lambda fn=fn, x=x: fn(x), lambda fn=fn, x=x, inputs=inputs, dy=dy: paddle.grad(fn(x), inputs, dy))
    return cases


def torch_cases():
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(0)

    def tensor(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()
    x_ffn, x_h, x_att = tensor(4096, 1024), tensor(4096, 256), tensor(32, 128, 128)
    w, b = tensor(256), tensor(256)
    cases = {}
    for name, fn, x, inputs in (("gelu [4096,1024]", F.gelu, x_ffn, [x_ffn]),
                                ("layer_norm [4096,256]", lambda x: F.layer_norm(x, [256], w, b, 1e-12), x_h, [x_h, w, b]),
                                ("dropout [4096,256]", lambda x: F.dropout(x, 0.1, training=True), x_h, [x_h]),
                                ("dropout [32,128,128]", lambda x: F.dropout(x, 0.1, training=True), x_att, [x_att])):
        dy = torch.ones_like(x)
        cases[name] = (lambda fn=fn, x=x: fn(x),
                       lambda fn=fn, x=x, inputs=inputs, dy=dy: torch.autograd.grad(fn(x), inputs, dy))
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=10, help="calls per timing")
    ap.add_argument("--repeats", type=int, default=3, help="timings per engine and kernel (best is kept)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    configure_process("cpu", num_threads=args.threads)
    from paddle_electra import cpu_kernels
    if not cpu_kernels.available():
        raise SystemExit("the compiled kernels are not available here (see the warning above)")
    engines = {"paddle": paddle_cases(ours=False), "ours": paddle_cases(ours=True)}
    if not args.no_torch:
        import torch
        torch.set_num_threads(args.threads)
        engines["torch"] = torch_cases()
    result = {}
    for kernel in engines["paddle"]:
        for part, i in (("forward", 0), ("forward+backward", 1)):
            result[f"{kernel} {part}"] = {name: best_ms(cases[kernel][i], args.rounds, args.repeats)
                                          for name, cases in engines.items()}
    for k, v in result.items():
        print(f"{k:40s} " + "  ".join(f"{name} {ms:8.3f} ms" for name, ms in v.items()))
    print(json.dumps({"benchmark": "cpu_kernels", "threads": args.threads, "ms_per_call": result,
                      "machine": machine_record()}))


if __name__ == "__main__":
    main()

"""fp32 GEMM rate of Paddle dygraph (`paddle.matmul`) against PyTorch on this CPU, same process, taking
turns. On AMD it also runs Paddle with MKL left on its vendor dispatch (in a child process started
without MKL_DEBUG_CPU_TYPE), to show what paddle_electra's MKL setting buys (paddle_electra/cpu.py).

    python benchmarks/gemm_throughput.py [--sizes 512 1024 2048] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import paddle_electra  # noqa: F401  (sets the MKL vendor switch before the first GEMM)
from paddle_electra.cpu import MKL_ENV, OPT_OUT_ENV, cpu_info, machine_record, mkl_status


def rate(mm, a, b, n, rounds):
    for _ in range(3):
        mm(a, b)
    t = time.perf_counter()
    for _ in range(rounds):
        c = mm(a, b)
    float(c[0, 0])  # wait for the result
    return 2 * n ** 3 * rounds / (time.perf_counter() - t) / 1e9


def paddle_engine(threads):
    import paddle
    from paddle_electra.paddle_compat import set_math_threads
    paddle.set_device("cpu")
    set_math_threads(threads)
    return paddle.matmul, lambda n: (paddle.randn([n, n]), paddle.randn([n, n]))


def torch_engine(threads):
    import torch
    torch.set_num_threads(threads)
    return torch.matmul, lambda n: (torch.randn(n, n), torch.randn(n, n))


def best_rates(engines, sizes, rounds, repeats):
    """{engine: {n: best GFLOP/s}}, the engines taking turns `repeats` times per size."""
    best = {name: {} for name in engines}
    for n in sizes:
        inputs = {name: make(n) for name, (_, make) in engines.items()}
        for _ in range(repeats):
            for name, (mm, _) in engines.items():
                best[name][n] = max(best[name].get(n, 0.0), rate(mm, *inputs[name], n, rounds))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=10, help="GEMMs per timing")
    ap.add_argument("--repeats", type=int, default=3, help="timings per engine and size (best is kept)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(best_rates({"paddle": paddle_engine(args.threads)}, args.sizes, args.rounds,
                                    args.repeats)["paddle"]))
        return
    rates = best_rates({"paddle": paddle_engine(args.threads), "torch": torch_engine(args.threads)},
                       args.sizes, args.rounds, args.repeats)
    ours, peer = rates["paddle"], rates["torch"]
    info = cpu_info()
    rec = {"benchmark": "gemm_throughput", **machine_record(), "threads": args.threads,
           "paddle_gflops": ours, "torch_gflops": peer,
           "ratio_to_torch": {n: ours[n] / peer[n] for n in args.sizes}}
    if info.is_amd:
        env = {k: v for k, v in os.environ.items() if k != MKL_ENV}
        env[OPT_OUT_ENV] = "0"
        out = subprocess.run([sys.executable, __file__, "--child", "--threads", str(args.threads),
                              "--rounds", str(args.rounds), "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes)],
                             env=env, check=True, capture_output=True, text=True).stdout
        rec["paddle_gflops_vendor_dispatch"] = {int(k): v for k, v in json.loads(out.splitlines()[-1]).items()}
    print(f"{info.describe()}, {args.threads} threads; {mkl_status()}")
    for n in args.sizes:
        line = f"  {n:5d}^3  paddle {ours[n]:6.1f}  torch {peer[n]:6.1f} GFLOP/s  ratio {ours[n] / peer[n]:.2f}"
        if "paddle_gflops_vendor_dispatch" in rec:
            line += f"   (paddle without the MKL setting {rec['paddle_gflops_vendor_dispatch'][n]:6.1f})"
        print(line)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()

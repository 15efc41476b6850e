"""Device and CPU thread set-up shared by every entry point.

Paddle picks GPU when it was built with CUDA and sees one; on CPU it runs its kernels on one
thread unless told otherwise (it sets OMP_NUM_THREADS=1 at import), which halves GEMM speed on
this project's 2-core machines: 207 vs 409 GFLOP/s for a 2048^2 matmul.
"""
from __future__ import annotations

import os
from typing import Optional


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_num_threads(processes_per_node: int = 1) -> int:
    env = os.environ.get("PADDLE_ELECTRA_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, available_cores() // max(1, processes_per_node))


def set_cpu_threads(num_threads: Optional[int] = None, processes_per_node: int = 1) -> int:
    import paddle
    n = num_threads or default_num_threads(processes_per_node)
    paddle.base.core.set_num_threads(n)
    return n


def setup_device(device: Optional[str] = None, num_threads: Optional[int] = None,
                 processes_per_node: int = 1) -> str:
    """Use `device` if given ("cpu", "gpu", "gpu:1"), else the GPU when there is one, else CPU with
    all cores (split between the processes of this node)."""
    import paddle
    if device is None:
        device = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if device.startswith("gpu") and ":" not in device:
        local_rank = os.environ.get("PADDLE_LOCAL_RANK") or os.environ.get("FLAGS_selected_gpus")
        if local_rank:
            device = f"gpu:{local_rank.split(',')[0]}"
    paddle.set_device(device)
    if device == "cpu":
        set_cpu_threads(num_threads, processes_per_node)
    return device

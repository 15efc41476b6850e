"""Device and CPU thread set-up shared by every entry point.

Paddle picks GPU when it was built with CUDA and sees one; on CPU it runs its kernels on one
thread unless told otherwise (it sets OMP_NUM_THREADS=1 at import), which halves GEMM speed on
this project's 2-core machines: 207 vs 409 GFLOP/s for a 2048^2 matmul. Its dygraph mode also
computes with denormal floats, which x86 cores handle in microcode, 10-100x slower; we flush them
to zero as TensorFlow's CPU thread pools and Paddle Inference's predictor do (`flush_denormals`).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Optional

logger = logging.getLogger(__name__)


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


@functools.lru_cache(maxsize=None)
def _scoped_flush_denormal_ctor():
    """Paddle's exported ScopedFlushDenormal::ScopedFlushDenormal(), looked up once; None where this
    Paddle build does not export it."""
    import paddle
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(paddle.__file__), "base", "libpaddle.so"))
        return lib._ZN6paddle8platform19ScopedFlushDenormalC1Ev
    except (OSError, AttributeError) as e:
        logger.debug("cannot flush denormals: %s", e)
        return None


def flush_denormals() -> bool:
    """Set flush-to-zero and denormals-are-zero (SSE MXCSR) on this thread; threads it starts later
    inherit the mode, so call it before the first parallel kernel. Paddle dygraph leaves denormals on,
    and training produces them: AdamW's second moment of a tiny gradient, g * g * (1 - beta2), falls
    below 1.2e-38, and every later update of that parameter runs in microcode. Measured here:
    fine-tuning a freshly pretrained small model at 2.1 examples/s with denormals, 19 without, same
    losses. The original ran in TensorFlow, whose CPU thread pools flush denormals too.
    Uses Paddle's own ScopedFlushDenormal (the one its inference predictor sets), never destroyed so
    the mode stays; returns False where this Paddle build does not export it."""
    ctor = _scoped_flush_denormal_ctor()
    if ctor is None:
        return False
    ctor(ctypes.create_string_buffer(64))  # the object only holds the previous mode (two bools)
    return True


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
        flush_denormals()
        set_cpu_threads(num_threads, processes_per_node)
    return device

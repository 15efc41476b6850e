"""Process-wide set-up, for entry points only (the `paddle-electra` CLI, the repo scripts, the
benchmarks): `configure_process()`. Library objects (trainers, ElectraPredictor, the hub module) take
an explicit device (`resolve_device` picks one without setting anything) and never call it.

Paddle picks GPU when it was built with CUDA and sees one; on CPU it runs its kernels on one
thread unless told otherwise (it sets OMP_NUM_THREADS=1 at import), which halves GEMM speed on
this project's 2-core machines: 207 vs 409 GFLOP/s for a 2048^2 matmul. Its dygraph mode also
computes with denormal floats, which x86 cores handle in microcode, 10-100x slower; we flush them
to zero as TensorFlow's CPU thread pools and Paddle Inference's predictor do (`flush_denormals`).
Paddle's CPU allocator takes every tensor from malloc and frees it after use; glibc maps large blocks
fresh from the kernel and returns them on free, so each new activation pays its page faults again
(`keep_freed_memory`).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
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
    from .paddle_compat import set_math_threads
    return set_math_threads(num_threads or default_num_threads(processes_per_node))


class _FEnv(ctypes.Structure):
    """glibc's fenv_t on x86-64 (<bits/fenv.h>): the x87 environment that fnstenv stores (28 bytes),
    then the SSE control and status register MXCSR."""
    _fields_ = [("x87", ctypes.c_uint8 * 28), ("mxcsr", ctypes.c_uint32)]


_MXCSR_FTZ, _MXCSR_DAZ = 1 << 15, 1 << 6  # flush-to-zero, denormals-are-zero


@functools.lru_cache(maxsize=None)
def _libm():
    """glibc's libm (fegetenv/fesetenv, C99 <fenv.h>) where _FEnv is its fenv_t; None elsewhere."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64") \
            or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libm.so.6")
    except OSError as e:
        logger.debug("cannot flush denormals: %s", e)
        return None


def _fenv(libm) -> Optional[_FEnv]:
    env = _FEnv()
    return env if libm is not None and libm.fegetenv(ctypes.byref(env)) == 0 else None


def denormals_flushed() -> bool:
    """Whether this thread flushes denormals (MXCSR FTZ and DAZ set); False where unknown."""
    env = _fenv(_libm())
    return env is not None and env.mxcsr & (_MXCSR_FTZ | _MXCSR_DAZ) == _MXCSR_FTZ | _MXCSR_DAZ


def flush_denormals() -> bool:
    """Set flush-to-zero and denormals-are-zero (SSE MXCSR) on this thread; threads it starts later
    inherit the mode, so call it before the first parallel kernel. Paddle dygraph leaves denormals on,
    and training produces them: AdamW's second moment of a tiny gradient, g * g * (1 - beta2), falls
    below 1.2e-38, and every later update of that parameter runs in microcode. Measured here:
    fine-tuning a freshly pretrained small model at 2.1 examples/s with denormals, 19 without, same
    losses. The original ran in TensorFlow, whose CPU thread pools flush denormals too.
    Sets the same two bits as Paddle's own ScopedFlushDenormal (what its inference predictor does),
    through libc's fegetenv/fesetenv; returns False where that is not available (not x86-64 glibc)."""
    libm = _libm()
    env = _fenv(libm)
    if env is None:
        return False
    env.mxcsr |= _MXCSR_FTZ | _MXCSR_DAZ
    return libm.fesetenv(ctypes.byref(env)) == 0


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
MMAP_THRESHOLD = 32 << 20  # the largest M_MMAP_THRESHOLD glibc accepts on 64-bit
TRIM_THRESHOLD = 2 ** 31 - 1  # (mallopt takes an int) keep up to 2 GiB free at the heap's top
TOP_PAD = 256 << 20  # grow the heap in steps of 256 MiB
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """glibc malloc: serve blocks up to 32 MiB from the heap and keep what is freed for the next
    allocation instead of returning it to the kernel. Paddle's CPU allocator passes every tensor to
    malloc and frees it after its last use; by default glibc maps each block of 32 MiB or less that is
    above its (moving) threshold afresh and trims the heap on free, so the next tensor of that size
    faults in every page again: a [4096, 1024] float32 activation of ELECTRA-small's 32 x 128 batch is
    4,096 page faults, ~10 ms on the AMD EPYC VMs this project runs on, 10x the op that fills it.
    Measured there (shared with another job): `x * 2` on [4096, 1024] 10.6 -> 1.1 ms, a fine-tuning
    step of ELECTRA-small 4.2 -> 3.1 s. The process keeps its peak heap (as PyTorch's CPU caching
    allocator does). Left alone where the user set glibc's MALLOC_*_ variables, or off glibc; returns
    whether it was set."""
    if any(k in os.environ for k in _MALLOC_ENV) or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as e:
        logger.debug("cannot tune malloc: %s", e)
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))


def local_process_count() -> int:
    """Processes of this job on this machine (paddle.distributed.launch's environment; 1 otherwise)."""
    world = int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))
    local = int(os.environ.get("PADDLE_LOCAL_SIZE", os.environ.get("PADDLE_NPROC_PER_NODE", str(world))))
    return max(1, min(local, world))


def resolve_device(device: Optional[str] = None) -> str:
    """`device` if given ("cpu", "gpu", "gpu:1"; a bare "gpu" under paddle.distributed.launch is this
    process's card), else the GPU when there is one, else "cpu". Sets nothing."""
    import paddle
    if device is None:
        device = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if device.startswith("gpu") and ":" not in device:
        local_rank = os.environ.get("PADDLE_LOCAL_RANK") or os.environ.get("FLAGS_selected_gpus")
        if local_rank:
            device = f"gpu:{local_rank.split(',')[0]}"
    return device


# third-party messages a user of the command line can do nothing about (entry points only: library code
# leaves the process's warnings and logging alone)
_NOISE_WARNINGS = (r"No ccache found",)  # paddle.utils.cpp_extension, imported by the compiled CPU kernels


def quiet_third_party() -> None:
    """Before paddle is imported (cli.main): no ccache warning, and glog's INFO / WARNING lines (Paddle's PIR
    notices such as "Paddle static graph(PIR) not support input out tensor") unless GLOG_minloglevel is set."""
    import warnings
    for message in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    os.environ.setdefault("GLOG_minloglevel", "2")


def _quiet_paddle2onnx() -> None:
    """paddle2onnx prints its INFO / WARNING lines on stdout (where `predict` writes its results), e.g. the
    failure of its own onnxoptimizer pass list that paddle_electra.inference works around: errors only."""
    import importlib.util
    if importlib.util.find_spec("paddle2onnx") is None:
        return
    try:
        from paddle2onnx.utils import logging as p2o_logging
        p2o_logging.log_level = 0
    except Exception:  # noqa: BLE001 - another paddle2onnx layout: its messages stay
        pass


def configure_process(device: Optional[str] = None, num_threads: Optional[int] = None,
                      processes_per_node: Optional[int] = None) -> str:
    """What an entry point sets once for its whole process: Paddle's global device (resolve_device),
    and on CPU denormal flushing, malloc keeping freed memory and the math library's threads (all
    cores, split between the processes of this node). Returns the device."""
    import paddle
    device = resolve_device(device)
    paddle.set_device(device)
    _quiet_paddle2onnx()
    if device == "cpu":
        flush_denormals()
        keep_freed_memory()
        set_cpu_threads(num_threads, processes_per_node or local_process_count())
    return device

"""bf16 GEMMs for CPU training (csrc/bf16_linear.cc, Paddle custom operators over the oneDNN that
ships in the Paddle wheel): `linear(x, weight, bias)` = x W + b with x and W rounded to bf16 (round to
nearest even), products accumulated in fp32 and an fp32 output; its backward dX = dY W^T and
dW = X^T dY the same way (dY rounded to bf16), db = the fp32 sum of dY; `matmul(x, y, transpose_y)`
the same for batched products (attention's q k^T and p v, the tied LM head). The parameters, their
gradients and the optimizer stay fp32 (fp32 master weights: each step rounds the current fp32 weights
to bf16 for its GEMMs). modeling.py's Linear, self-attention and LM head run them in dygraph training
when their `bf16_gemm` flag is set (modeling.set_execution_modes), which `--amp bf16` sets on CPU;
evaluation and export run fp32.

Why: Paddle 3.3's CPU dygraph matmul has no bf16 kernel, and on CPUs with native bf16 (avx512_bf16:
AMD Zen 4 / Zen 5, Intel Cooper Lake; AMX-bf16: Sapphire Rapids and later) a bf16 GEMM runs at 2x
(avx512_bf16) to ~8x (AMX) the fp32 rate (measured figures: docs/pretraining.md, "--amp bf16 on CPU, measured").
Where the CPU has no native bf16, oneDNN would emulate it (slower than fp32): `unavailable()` says so
and `--amp bf16` is refused on such a CPU with that reason.

Accuracy: bf16 keeps 8 significant bits, so each GEMM's result differs from fp32's by ~2^-9 relative
to the magnitudes summed (tests/test_bf16_linear.py states the tolerances); training loss curves stay
within the tolerance that test states.

Threads: one OpenMP pool. libdnnl.so.3 names libgomp, but in a Paddle process its OpenMP calls bind to
Paddle's libiomp5 (loaded first), MKL's pool; the op links libiomp5 too. (Built against libgomp, the
op's conversions ran on a second pool whose spinning threads took the cores from oneDNN's: slower
than fp32 at two threads.)

Build: as cpu_kernels.py's (on first use, cached under $PADDLE_ELECTRA_HOME/.kernel_cache by a key of
the source, Paddle and oneDNN versions, flags and this CPU; built under a lock, renamed into place,
SHA-256 checked before every load). The wheel ships oneDNN's library (paddle/libs/libdnnl.so.3) but not
the oneapi/dnnl/ headers its dnnl.h includes, so the source declares the few C calls it makes; the
build needs oneDNN 3.x (its C API and enum values are stable within a major version).
PADDLE_ELECTRA_BF16_GEMM=0 turns it off (Linear then runs fp32).
"""
from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import shutil
from typing import Optional

from . import cpu_kernels, paddle_compat
from .cpu import CpuInfo, cpu_info

logger = logging.getLogger(__name__)

NAME = "electra_bf16_linear"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "bf16_linear.cc")
OPT_OUT_ENV = "PADDLE_ELECTRA_BF16_GEMM"  # 0: never
CXX_FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp")
ONEDNN = "libdnnl.so.3"


def _paddle_libs() -> str:
    import paddle
    return os.path.join(os.path.dirname(paddle.__file__), "libs")


@functools.lru_cache(maxsize=None)
def onednn_version() -> Optional[str]:
    """The version of the oneDNN library in the Paddle wheel ("3.6.2"), None where there is none."""
    path = os.path.join(_paddle_libs(), ONEDNN)
    if not os.path.exists(path):
        return None

    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                    ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]

    try:
        lib = ctypes.CDLL(path)
        lib.dnnl_version.restype = ctypes.POINTER(_Version)
        v = lib.dnnl_version().contents
    except (OSError, AttributeError):
        return None
    return f"{v.major}.{v.minor}.{v.patch}"


def unavailable(info: Optional[CpuInfo] = None) -> Optional[str]:
    """Why the bf16 GEMMs cannot run on this CPU (or `info`'s), None when they can (they may still fail
    to build: `available()`)."""
    info = info or cpu_info()
    if os.environ.get(OPT_OUT_ENV, "1") == "0":
        return f"{OPT_OUT_ENV}=0"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"built for Linux x86-64 only (this is {platform.system()} {platform.machine()})"
    if not info.has_native_bf16:
        return (f"this CPU ({info.describe()}) has no native bf16 (avx512_bf16 or amx_bf16): bf16 GEMMs would "
                f"be emulated, slower than fp32")
    missing = [f for f in cpu_kernels.NEEDED_ISA if f not in info.flags]
    if missing:
        return f"this CPU ({info.describe()}) lacks {' and '.join(missing)}"
    version = onednn_version()
    if version is None:
        return f"this Paddle wheel has no oneDNN library ({ONEDNN} in {_paddle_libs()})"
    if not version.startswith("3."):
        return f"the oneDNN in this Paddle wheel is {version}; the op is written for oneDNN 3.x"
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler (c++ or g++) on PATH"
    return None


def build_key(source: bytes, info: CpuInfo) -> dict:
    return {**cpu_kernels.build_key(source, info, CXX_FLAGS), "onednn": onednn_version()}


def _compile(build_directory: str) -> str:
    from paddle.utils.cpp_extension import load
    libs = _paddle_libs()
    os.makedirs(build_directory, exist_ok=True)
    load(name=NAME, sources=[SOURCE], extra_cxx_cflags=list(CXX_FLAGS),
         extra_ldflags=[f"-L{libs}", f"-l:{ONEDNN}"] + cpu_kernels._link_flags(),  # Paddle's libiomp5: one pool
         build_directory=build_directory)
    return os.path.join(build_directory, NAME)


def _load(info: CpuInfo) -> str:
    with open(SOURCE, "rb") as f:
        key = build_key(f.read(), info)
    return cpu_kernels.load_or_build(cpu_kernels.build_folder(key, NAME), key, NAME,
                                     lambda folder, key_: cpu_kernels.build_into(folder, key_, _compile, NAME))


@functools.lru_cache(maxsize=None)
def why_not() -> Optional[str]:
    """None when the bf16 GEMM op is loaded in this process (found or built on the first call); else why
    it cannot be, said once in a warning."""
    info = cpu_info()
    why = unavailable(info)
    if why is None:
        try:
            logger.info("bf16 GEMMs: %s", _load(info))
            return None
        except Exception as e:  # noqa: BLE001 - any failure means fp32, said once
            why = f"building {SOURCE} failed: {e}"
    logger.warning("bf16 GEMMs not used, fp32 runs instead: %s", why)
    return why


def refusal(setting: str) -> Optional[str]:
    """None when `setting` (what the user asked for, e.g. "--amp bf16") can run the bf16 GEMMs here (the op
    is built on the first call); else the message that refuses it, with the reason."""
    why = why_not()
    return None if why is None else \
        f"{setting} runs the Linear GEMMs in bf16 where the CPU has native bf16, not here: {why}"


def available() -> bool:
    """Whether the bf16 GEMM op is loaded in this process (see why_not)."""
    return why_not() is None


def usable_for(x) -> bool:
    import paddle
    return x.dtype == paddle.float32 and x.place.is_cpu_place() and available()


def linear(x, weight, bias):
    """x W + b (x [..., in], W [in, out], b [out], float32 CPU tensors) with bf16 GEMMs, fp32 result and
    gradients."""
    return paddle_compat.run_custom_op("electra_bf16_linear", x, weight, bias, paddle_compat.math_threads())[0]


def matmul(x, y, transpose_y=False):
    """paddle.matmul(x, y, transpose_y=...) with bf16 GEMMs, fp32 result and gradients, for float32 CPU
    tensors x [..., M, K] and y [..., K, N] ([..., N, K] with transpose_y) of the same batch axes, or y 2-D."""
    return paddle_compat.run_custom_op("electra_bf16_matmul", x, y, bool(transpose_y), paddle_compat.math_threads())[0]

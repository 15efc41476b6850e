"""Compiled CPU training kernels (csrc/cpu_kernels.cc, Paddle custom operators): erf-GELU, LayerNorm,
dropout and attention's masked softmax, forward and backward, fp32, AVX2 + FMA, multithreaded.
modeling.py's GELU, LayerNorm and Dropout layers and its fast_cpu_attention run them in dygraph training
when their `fast_cpu_kernels` flag is set and `available()`; everywhere else (evaluation, export, GPU,
other dtypes) Paddle's own kernels run.

Why: Paddle 3.3's CPU kernels for these are far slower than the memory traffic they need. Measured
on AMD EPYC (Zen 3, 2 cores), ELECTRA-small fine-tuning, 32 x 128 (docs/pretraining.md section 6):
gelu_grad 36 ms per [4096, 1024] call (PyTorch 2.75 ms), layer_norm_grad 11.5 ms per [4096, 256]
(PyTorch 0.4 ms), dropout 7.3 ms per call on average, 74 calls a step.

Dropout: upscale_in_train (Paddle's default: kept values / (1 - p)), its keep mask from a
counter-based hash of (element index, a 64-bit key that `dropout` draws from Paddle's generator for
each call), so `paddle.seed(n)` repeats every mask, and recompute (which replays the generator)
rebuilds the same ones; the mask is kept as bits (1/32 of the tensor) for the backward.

Accuracy: GELU is the original's erf form, 0.5 x (1 + erf(x / sqrt 2)); erf and exp are glibc's vector
math library (libmvec, max error 4 ulp as glibc documents), so outputs and gradients agree with
Paddle's to a few float32 ulp (tests/test_cpu_kernels.py states the tolerances). LayerNorm takes the
mean and the biased variance in two passes over each row (8-wide partial sums) and saves mean and
1/sqrt(var + eps) for the backward; dgamma and dbeta are summed per thread over its rows, then in
thread order: the same inputs and thread count give the same bits. -ffast-math (this one file only)
lets the compiler vectorize those sums and call libmvec; it also assumes finite values, so an input
holding inf or NaN (a run that has already diverged) gives NaN or unspecified values.

Threads: paddle_compat.math_threads(), what runtime.configure_process gave Paddle's math library (one
per process when each core has its own process); OpenMP from Paddle's own libiomp5, the pool its MKL
GEMMs use, so the two never run side by side.

Build: on first use in a process, `paddle.utils.cpp_extension.load` compiles the source into
$PADDLE_ELECTRA_HOME/.kernel_cache/<name>-<key>/ (or $PADDLE_ELECTRA_KERNEL_CACHE), where the key is a
hash of the source, the Paddle version, the compiler flags and this CPU's model and flags
(paddle_electra.cpu): a library built for another CPU, Paddle or source is never loaded (the CPU of
these machines changes between sessions while the environment stays). The build runs under a lock
beside the build folder (`.<folder>.lock`, outside what it replaces), into a temporary folder that is
renamed into place when complete, so processes started together (paddle.distributed.launch) build once
and never load half a library. build.json also records the SHA-256 of the library, checked before every
load: a damaged library (overwritten or truncated bytes, which would crash the process in dlopen) is
never loaded; one warning names it and it is rebuilt. Without a
C++ compiler, on a CPU without AVX2/FMA, when the build fails, or with PADDLE_ELECTRA_CPU_KERNELS=0,
one warning says why and Paddle's kernels run.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
from typing import Callable, Optional, Tuple

from . import paddle_compat
from .cpu import CpuInfo, cpu_info
from .io import atomic_dir, file_digest, folder_lock, package_home

logger = logging.getLogger(__name__)

NAME = "electra_cpu_kernels"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "cpu_kernels.cc")
OPT_OUT_ENV = "PADDLE_ELECTRA_CPU_KERNELS"  # 0: always Paddle's kernels
CACHE_ENV = "PADDLE_ELECTRA_KERNEL_CACHE"  # where builds are kept (default $PADDLE_ELECTRA_HOME/.kernel_cache)
CXX_FLAGS = ("-O3", "-mavx2", "-mfma", "-ffast-math", "-fopenmp")
NEEDED_ISA = ("avx2", "fma")
BUILD_META = "build.json"


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(package_home(), ".kernel_cache")


def build_key(source: bytes, info: CpuInfo, cxx_flags=CXX_FLAGS) -> dict:
    """What a build depends on; a cached build is used only where all of it is the same."""
    import paddle
    return {"source_sha256": hashlib.sha256(source).hexdigest(), "paddle": paddle.__version__,
            "cxx_flags": list(cxx_flags), "cpu": info.model, "vendor": info.vendor, "cpu_flags": sorted(info.flags)}


def build_folder(key: dict, name: str = NAME) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return os.path.join(cache_root(), f"{name}-{digest}")


LIBRARY_SHA = "library_sha256"  # build.json's record of the library's bytes, checked before every load



def cache_state(folder: str, key: dict, name: str = NAME) -> Tuple[str, str]:
    """(state, library path) of the build in `folder`: "ok" when its build.json records exactly `key` and
    the SHA-256 of the library's bytes it recorded at the build; "damaged" when the key matches but the
    library's bytes do not (overwritten, truncated, missing: loading it could crash the process with
    SIGILL or SIGBUS); "absent" otherwise (no build, or a build for another key)."""
    library = os.path.join(folder, f"{name}.so")
    try:
        with open(os.path.join(folder, BUILD_META), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return "absent", library
    if not isinstance(meta, dict) or {k: v for k, v in meta.items() if k != LIBRARY_SHA} != key:
        return "absent", library
    try:
        same = meta.get(LIBRARY_SHA) == file_digest(library)
    except OSError:
        same = False
    return ("ok" if same else "damaged"), library


def cached_library(folder: str, key: dict, name: str = NAME) -> Optional[str]:
    """The built library in `folder` if its build.json records exactly `key` and the library is the one
    built (its SHA-256); else None."""
    state, library = cache_state(folder, key, name)
    return library if state == "ok" else None


def _unavailable(info: CpuInfo) -> Optional[str]:
    if os.environ.get(OPT_OUT_ENV, "1") == "0":
        return f"{OPT_OUT_ENV}=0"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"built for Linux x86-64 only (this is {platform.system()} {platform.machine()})"
    missing = [f for f in NEEDED_ISA if f not in info.flags]
    if missing:
        return f"this CPU ({info.describe()}) lacks {' and '.join(missing)}"
    if not (shutil.which("c++") or shutil.which("g++")):
        return "no C++ compiler (c++ or g++) on PATH"
    return None


def _link_flags() -> list:
    import paddle
    libs = os.path.join(os.path.dirname(paddle.__file__), "libs")
    if os.path.exists(os.path.join(libs, "libiomp5.so")):  # the OpenMP runtime of Paddle's MKL
        return [f"-L{libs}", "-liomp5", f"-Wl,-rpath,{libs}"]
    return ["-fopenmp"]


def _compile(build_directory: str) -> str:
    """Compile the source in `build_directory` (cpp_extension.load compiles in a subprocess, its compiler
    output going to stderr, then loads the library and registers its ops); the folder it built."""
    from paddle.utils.cpp_extension import load
    os.makedirs(build_directory, exist_ok=True)
    load(name=NAME, sources=[SOURCE], extra_cxx_cflags=list(CXX_FLAGS), extra_ldflags=_link_flags(),
         build_directory=build_directory)
    return os.path.join(build_directory, NAME)


def _build(folder: str, key: dict) -> None:
    build_into(folder, key, lambda directory: _compile(directory), NAME)


def build_into(folder: str, key: dict, compile_: Callable[[str], str], name: str) -> None:
    """Compile (`compile_(build directory)` -> the folder it built) into a temporary folder beside
    `folder`, record the key and the library's SHA-256 in its build.json, then let it replace `folder`
    in one rename (io.atomic_dir; the caller holds the lock)."""
    with atomic_dir(folder) as out:
        built = compile_(os.path.join(out, ".build"))
        for entry in os.listdir(built):
            if entry != "build":  # objects
                os.rename(os.path.join(built, entry), os.path.join(out, entry))
        shutil.rmtree(os.path.join(out, ".build"))
        with open(os.path.join(out, BUILD_META), "w", encoding="utf-8") as f:
            json.dump({**key, LIBRARY_SHA: file_digest(os.path.join(out, f"{name}.so"))}, f, indent=1)


def _load(info: CpuInfo) -> str:
    """Find or build the library for this CPU and register its ops in this process; what was done."""
    with open(SOURCE, "rb") as f:
        key = build_key(f.read(), info)
    return load_or_build(build_folder(key), key, NAME, lambda folder, key_: _build(folder, key_))


def load_or_build(folder: str, key: dict, name: str, build: Callable[[str, dict], None]) -> str:
    """Register the ops of the library cached in `folder` for `key`, building it first (`build(folder,
    key)`, under the folder's lock) when it is absent or damaged; what was done."""
    state, library = cache_state(folder, key, name)
    if state != "ok":
        with folder_lock(folder):  # one builder at a time (its lock file beside the folder it replaces)
            state, library = cache_state(folder, key, name)
            if state != "ok":
                if state == "damaged":
                    logger.warning("compiled CPU kernels: %s is not the library that was built there (its SHA-256 "
                                   "differs from the one in %s): the cache is damaged; rebuilding it", library,
                                   BUILD_META)
                build(folder, key)  # cpp_extension.load registers the ops as it loads them
                if cached_library(folder, key, name) is None:
                    raise RuntimeError(f"the build left no library in {folder}")
                return f"built {library}"
    paddle_compat.register_custom_ops(library)  # only a library whose bytes are the ones built
    return f"loaded {library}"


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether the compiled kernels are loaded in this process (found or built on the first call);
    False, after one warning saying why, where they cannot be."""
    info = cpu_info()
    why = _unavailable(info)
    if why is None:
        try:
            logger.info("compiled CPU kernels: %s", _load(info))  # "built ..." or "loaded ..."
            return True
        except Exception as e:  # noqa: BLE001 - any failure means Paddle's kernels, said once
            why = f"building {SOURCE} failed: {e}"
    logger.warning("compiled CPU kernels (GELU, LayerNorm, dropout) not used, Paddle's run instead: %s", why)
    return False


def usable_for(x) -> bool:
    """The compiled kernels can take `x`: fp32 on the CPU, and they are available."""
    import paddle
    return x.dtype == paddle.float32 and x.place.is_cpu_place() and available()


def gelu(x):
    """erf GELU of a float32 CPU tensor, with its gradient."""
    return paddle_compat.run_custom_op("electra_gelu", x, paddle_compat.math_threads())[0]


def layer_norm(x, weight, bias, epsilon: float):
    """LayerNorm over the last axis of a float32 CPU tensor (weight and bias of its width), with gradients."""
    return paddle_compat.run_custom_op("electra_layer_norm", x, weight, bias, float(epsilon),
                                       paddle_compat.math_threads())[0]


def masked_softmax(scores, mask, scale: float):
    """softmax(scores * scale + mask) over the last axis, with its gradient (for `scores`): scores [..., R, C]
    float32 CPU batch matrices, mask [batch, C] (the additive attention mask) added to every row of its matrix."""
    return paddle_compat.run_custom_op("electra_masked_softmax", scores, mask, float(scale),
                                       paddle_compat.math_threads())[0]


def dropout(x, p: float):
    """Dropout of a float32 CPU tensor (upscale_in_train), with its gradient through the same mask."""
    import paddle
    # 62 random bits from Paddle's generator (randint's bound is an int32): paddle.seed repeats them
    key = paddle.randint(0, 2 ** 31 - 1, [2], dtype="int64").numpy()
    seed = (int(key[0]) << 31) | int(key[1])
    return paddle_compat.run_custom_op("electra_dropout", x, float(p), seed, paddle_compat.math_threads())[0]

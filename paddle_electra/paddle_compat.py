"""Every use of a Paddle API that is not public, in one place, for the Paddle versions it was written
against (SUPPORTED, the range setup.py asks for). Importing this module checks the installed version
once and warns outside that range; `check_private_apis()` lists what a shim needs that this Paddle
lacks (tests/test_paddle_compat.py runs it, so a Paddle upgrade that moves one fails by name).

The shims:
- `set_math_threads` / `math_threads`: the CPU math library's thread count (`paddle.base.core.set_num_threads`;
  Paddle has no public call, no getter, and sets OMP_NUM_THREADS=1 at import);
- `register_custom_ops` / `run_custom_op`: load a compiled custom-operator library that is already built
  (`paddle.utils.cpp_extension.load` always re-runs its build script) and call its ops in dygraph;
- `supports_bf16_fast`: whether Paddle's oneDNN sees native bf16 (`core.supports_bfloat16_fast_performance`);
- `rng_state_to_json` / `rng_state_from_json`: Paddle's generator states as JSON for checkpoints
  (`paddle.get_rng_state()` returns `paddle.base.libpaddle.GeneratorState`, rebuilt from its pickle state);
- `HookedAdamW`: paddle.optimizer.AdamW with two public hooks in place of the private methods
  `_add_accumulator` (initial value of an accumulator) and `_create_param_lr` (per-parameter lr).
"""
from __future__ import annotations

import functools
import re
import warnings
from typing import List, Optional, Tuple

import paddle

SUPPORTED = ((3, 0), (3, 4))  # >= 3.0, < 3.4
# what each shim reaches for: (object path, attribute)
PRIVATE_APIS = (
    ("paddle.base.core", "set_num_threads"),
    ("paddle.base.core", "supports_bfloat16_fast_performance"),
    ("paddle.base.libpaddle", "GeneratorState"),
    ("paddle.utils.cpp_extension", "load_op_meta_info_and_register_op"),
    ("paddle._C_ops", "_run_custom_op"),
    ("paddle.optimizer.AdamW", "_add_accumulator"),
    ("paddle.optimizer.AdamW", "_create_param_lr"),
    ("paddle.optimizer.AdamW", "_global_learning_rate"),
)
# names of AdamW's bias-correction accumulators (state dict keys end in <name>_0)
ADAMW_BETA_POW_ACCUMULATORS = ("beta1_pow_acc", "beta2_pow_acc")


class PaddleCompatError(RuntimeError):
    pass


def parse_version(version: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of a Paddle version string ("3.3.1", "3.0.0rc1"); None for a develop build ("0.0.0")."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m or (int(m.group(1)), int(m.group(2))) == (0, 0):
        return None
    return int(m.group(1)), int(m.group(2))


def version_supported(version: str) -> bool:
    v = parse_version(version)
    return v is not None and SUPPORTED[0] <= v < SUPPORTED[1]


def check_version(version: Optional[str] = None) -> bool:
    """Warn when `version` (default: the installed Paddle's) is outside SUPPORTED; True when inside."""
    version = version or paddle.__version__
    if version_supported(version):
        return True
    lo, hi = (".".join(map(str, v)) for v in SUPPORTED)
    warnings.warn(f"paddle-electra's Paddle shims (paddle_electra.paddle_compat) were written for "
                  f"PaddlePaddle >= {lo}, < {hi}; this is {version}: private APIs may have moved "
                  f"(run paddle_electra.paddle_compat.check_private_apis() to see which)", RuntimeWarning, stacklevel=2)
    return False


def _resolve(path: str):
    import importlib
    parts = path.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(path)


def check_private_apis() -> List[str]:
    """The entries of PRIVATE_APIS that the installed Paddle lacks ("module.attr"); [] when all are there."""
    missing = []
    for path, attr in PRIVATE_APIS:
        try:
            ok = hasattr(_resolve(path), attr)
        except (ImportError, AttributeError):
            ok = False
        if not ok:
            missing.append(f"{path}.{attr}")
    return missing


def _need(path: str, attr: str):
    try:
        return getattr(_resolve(path), attr)
    except (ImportError, AttributeError) as e:
        raise PaddleCompatError(f"PaddlePaddle {paddle.__version__} has no {path}.{attr} ({e}); "
                                f"paddle_electra.paddle_compat supports {SUPPORTED}") from e


# --- threads and ISA -----------------------------------------------------------------------------------
_math_threads = 1  # what Paddle uses until told otherwise (it sets OMP_NUM_THREADS=1 at import)


def set_math_threads(n: int) -> int:
    """Threads of Paddle's CPU math library (MKL/OpenBLAS, oneDNN) for the whole process."""
    global _math_threads
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _need("paddle.base.core", "set_num_threads")(int(n))
    _math_threads = int(n)
    return int(n)


def math_threads() -> int:
    """The thread count last given to set_math_threads (1 before any call); our own compiled kernels
    (paddle_electra.cpu_kernels) use as many."""
    return _math_threads


def supports_bf16_fast() -> Optional[bool]:
    """Paddle's own answer to "does oneDNN have native bf16 here" (AVX512-BF16 or AMX); None when
    this Paddle build does not say."""
    try:
        return bool(_need("paddle.base.core", "supports_bfloat16_fast_performance")())
    except PaddleCompatError:
        return None


# --- RNG state --------------------------------------------------------------------------------------
def _listify(x):
    return [_listify(v) for v in x] if isinstance(x, (tuple, list)) else x


def rng_state_to_json() -> list:
    """paddle.get_rng_state() of this process as nested lists (JSON-serialisable)."""
    return [_listify(s.__getstate__()) for s in paddle.get_rng_state()]


def rng_state_from_json(states: list) -> None:
    """The inverse of rng_state_to_json: paddle.set_rng_state from the nested lists."""
    GeneratorState = _need("paddle.base.libpaddle", "GeneratorState")
    out = []
    for s in states:
        g = GeneratorState.__new__(GeneratorState)
        g.__setstate__(tuple(s))  # (device, seed, offset, [state bytes]) as __getstate__ gave it
        out.append(g)
    paddle.set_rng_state(out)


# --- custom operators ------------------------------------------------------------------------------
def register_custom_ops(library: str) -> list:
    """Register the custom operators of a built shared library (PD_BUILD_OP) in this process; their names."""
    return list(_need("paddle.utils.cpp_extension", "load_op_meta_info_and_register_op")(library))


def run_custom_op(name: str, *inputs_then_attrs) -> list:
    """Run a registered custom operator in dygraph (with autograd through its PD_BUILD_GRAD_OP):
    its inputs, then its attributes, in the order PD_BUILD_OP lists them; its outputs."""
    return _run_custom_op()(name, *inputs_then_attrs)


@functools.lru_cache(maxsize=None)
def _run_custom_op():
    return _need("paddle._C_ops", "_run_custom_op")


# --- optimizer ----------------------------------------------------------------------------------------
class HookedAdamW(paddle.optimizer.AdamW):
    """paddle.optimizer.AdamW whose subclasses override `accumulator_initial_value` and `parameter_lr`
    instead of Paddle's private methods."""

    def accumulator_initial_value(self, name: str, default: float) -> float:
        """Initial value of accumulator `name` (moment1_0, beta1_pow_acc, ...) of every parameter."""
        return default

    def parameter_lr(self, param, lr):
        """Learning rate (a float or a tensor) of `param` this step; `lr` is the global one."""
        return lr

    def _add_accumulator(self, name, param, dtype=None, fill_value=0.0, shape=None, type=None, device=None):
        return super()._add_accumulator(name, param, dtype=dtype, fill_value=self.accumulator_initial_value(
            name, fill_value), shape=shape, type=type, device=device)

    def _create_param_lr(self, param_and_grad):
        return self.parameter_lr(param_and_grad[0], self._global_learning_rate())


check_version()

"""Every use of a Paddle API that is not public, in one place, for the Paddle versions it was written
against (SUPPORTED, the range setup.py asks for). Importing this module checks the installed version
once and warns outside that range; `check_private_apis()` lists what a shim needs that this Paddle
lacks (tests/test_paddle_compat.py runs it, so a Paddle upgrade that moves one fails by name).

The shims:
- `set_math_threads`: the CPU math library's thread count (`paddle.base.core.set_num_threads`;
  Paddle has no public call, and sets OMP_NUM_THREADS=1 at import);
- `supports_bf16_fast`: whether Paddle's oneDNN sees native bf16 (`core.supports_bfloat16_fast_performance`);
- `rng_state_to_json` / `rng_state_from_json`: Paddle's generator states as JSON for checkpoints
  (`paddle.get_rng_state()` returns `paddle.base.libpaddle.GeneratorState`, rebuilt from its pickle state);
- `HookedAdamW`: paddle.optimizer.AdamW with two public hooks in place of the private methods
  `_add_accumulator` (initial value of an accumulator) and `_create_param_lr` (per-parameter lr).
"""
from __future__ import annotations

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
def set_math_threads(n: int) -> int:
    """Threads of Paddle's CPU math library (MKL/OpenBLAS, oneDNN) for the whole process."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _need("paddle.base.core", "set_num_threads")(int(n))
    return int(n)


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

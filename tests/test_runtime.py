"""Device set-up: denormal floats are flushed to zero on CPU (see runtime.flush_denormals)."""
import subprocess
import sys

import pytest

CODE = """
import numpy as np, paddle
x = paddle.to_tensor(np.full([4], 1e-39, np.float32))
before = float((x * 0.5).numpy()[0])
from paddle_electra.runtime import setup_device
setup_device("cpu")
after = float((x * 0.5).numpy()[0])
normal = float((paddle.to_tensor(np.full([4], 1e-30, np.float32)) * 0.5).numpy()[0])
print(before, after, normal)
"""


def test_setup_device_flushes_denormals_on_cpu():
    # a fresh process: the mode is per thread and stays set once set
    out = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True, text=True)
    before, after, normal = map(float, out.stdout.split())
    assert before > 0  # Paddle's default: the denormal result is computed
    assert after == 0.0  # flushed
    assert normal == pytest.approx(5e-31, rel=1e-6, abs=0)  # normal numbers untouched

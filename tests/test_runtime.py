"""Process set-up (runtime.configure_process) and what library objects use instead (resolve_device)."""
import subprocess
import sys

import pytest

CODE = """
import numpy as np, paddle
from paddle_electra import runtime
x = paddle.to_tensor(np.full([4], 1e-39, np.float32))
before = float((x * 0.5).numpy()[0])
flushed_before = runtime.denormals_flushed()
device = runtime.configure_process("cpu", num_threads=1)
after = float((x * 0.5).numpy()[0])
normal = float((paddle.to_tensor(np.full([4], 1e-30, np.float32)) * 0.5).numpy()[0])
print(before, after, normal, flushed_before, runtime.denormals_flushed(), device)
"""


def _fresh(code):
    # a fresh process: the mode is per thread and stays set once set
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()


def test_configure_process_flushes_denormals_on_cpu():
    before, after, normal, flushed_before, flushed_after, device = _fresh(CODE)
    assert float(before) > 0  # Paddle's default: the denormal result is computed
    assert flushed_before == "False" and flushed_after == "True"
    assert float(after) == 0.0  # flushed
    assert float(normal) == pytest.approx(5e-31, rel=1e-6, abs=0)  # normal numbers untouched
    assert device == "cpu"


def test_threads_started_later_inherit_the_flushed_mode():
    code = ("import threading; from paddle_electra import runtime; runtime.flush_denormals(); out = []\n"
            "t = threading.Thread(target=lambda: out.append(runtime.denormals_flushed())); t.start(); t.join()\n"
            "print(out[0])")
    assert _fresh(code) == ["True"]


def test_resolve_device_sets_nothing():
    code = ("import paddle; from paddle_electra import runtime; before = paddle.get_device()\n"
            "print(runtime.resolve_device('cpu'), runtime.resolve_device(), paddle.get_device() == before, "
            "runtime.denormals_flushed())")
    cpu, default, unchanged, flushed = _fresh(code)
    assert cpu == "cpu" and default in ("cpu", "gpu", "gpu:0") and unchanged == "True" and flushed == "False"


def test_local_process_count_reads_the_launcher_environment(monkeypatch):
    from paddle_electra import runtime
    for k in ("PADDLE_TRAINERS_NUM", "PADDLE_LOCAL_SIZE", "PADDLE_NPROC_PER_NODE"):
        monkeypatch.delenv(k, raising=False)
    assert runtime.local_process_count() == 1
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "4")
    monkeypatch.setenv("PADDLE_NPROC_PER_NODE", "2")  # 2 machines x 2 processes
    assert runtime.local_process_count() == 2
    assert runtime.default_num_threads(runtime.local_process_count()) == max(1, runtime.available_cores() // 2)


def test_library_modules_leave_process_state_alone():
    """Only entry points configure the process: no library module calls configure_process or
    paddle.set_device (the CLI, the demo and the benchmarks do)."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / "paddle_electra"
    entry_points = {"cli.py", "demo.py", "runtime.py"}  # cli.py: the CLI layer (paddle_electra/, conversion/, ...)
    offenders = []
    for p in root.rglob("*.py"):
        library = p.read_text(encoding="utf-8").split('if __name__ == "__main__":')[0]
        if p.name not in entry_points and ("configure_process(" in library or "paddle.set_device(" in library):
            offenders.append(str(p.relative_to(root)))
    assert offenders == []


def test_configure_process_keeps_freed_memory_for_the_next_tensor():
    """After configure_process, a fresh [4096, 1024] float32 result (16 MiB) reuses freed memory
    instead of faulting in its 4,096 pages again (glibc's default: every time)."""
    code = ("import resource, paddle; from paddle_electra import runtime\n"
            "x = paddle.ones([4096, 1024])\n"
            "def faults():\n"
            "    for _ in range(10): y = x * 2.0\n"
            "    f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "    for _ in range(10): y = x * 2.0\n"
            "    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f) / 10\n"
            "before = faults(); runtime.configure_process('cpu', num_threads=1); print(before, faults())")
    before, after = map(float, _fresh(code))
    assert before > 4000  # glibc's default, as this test's premise: every page, every time
    assert after < 500  # at most one block's pages over the 10 (the heap's last growth)

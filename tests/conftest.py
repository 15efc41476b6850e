import os
import shutil
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("PADDLE_ELECTRA_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long tests, left out of the default run (make test)")
    # the tests run the Paddle Inference engine (subprocesses too) unless the variable is set: the "auto"
    # engine, ONNX Runtime where installed, converts each model to ONNX first (seconds per model);
    # tests/test_inference_engines.py runs the auto rule and every engine
    os.environ.setdefault("PADDLE_ELECTRA_ENGINE", "paddle")
    # the compiled CPU kernels (paddle_electra.cpu_kernels) are built once per test run, here, not in
    # each test's own PADDLE_ELECTRA_HOME; subprocesses inherit the folder
    if "PADDLE_ELECTRA_KERNEL_CACHE" not in os.environ:
        os.environ["PADDLE_ELECTRA_KERNEL_CACHE"] = config._electra_kernel_cache = tempfile.mkdtemp(
            prefix="paddle-electra-kernels-")


def pytest_unconfigure(config):
    if getattr(config, "_electra_kernel_cache", None):
        shutil.rmtree(config._electra_kernel_cache, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data, or skip: the test command must pass on a machine without it."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return os.path.abspath(SHARED_DATA)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    # never touch the user's ~/.paddle_electra from a test
    monkeypatch.setenv("PADDLE_ELECTRA_HOME", str(tmp_path / "electra_home"))


def pytest_terminal_summary(terminalreporter):
    # floats and speed depend on the CPU: every run says which one it had (also under -q)
    from paddle_electra.cpu import cpu_info, mkl_status
    terminalreporter.write_line(f"ran on: {cpu_info().describe()}, {os.cpu_count()} cores; {mkl_status()}")

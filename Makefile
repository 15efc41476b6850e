# `make demo` runs the main job end to end on the bundled sample; `make test` runs the tests.
# Each target installs only what it runs: the demo the package with PaddleHub, the tests also the
# reference stack of the parity tests (TensorFlow, PyTorch, transformers), the benchmarks the peers.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-all bench clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

# one stamp per extra set, so that changing setup.py reinstalls
$(VENV)/.installed-%: setup.py $(VENV)/.created
	$(PY) -m pip install -e ".[$(subst -,$(comma),$*)]"
	touch $@

comma := ,

install: $(VENV)/.installed-hub-test-bench

# DEMO_ARGS=--quick: the same steps on a small budget (CI runs it in an install of the hub extra alone)
demo: $(VENV)/.installed-hub
	$(PY) -m paddle_electra.demo $(DEMO_ARGS)

# the default run: everything but tests marked slow (< 10 minutes on 2 cores)
test: $(VENV)/.installed-hub-test
	$(PY) -m pytest -q -m "not slow" --durations=15 tests

test-all: $(VENV)/.installed-hub-test
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed-hub-bench
	$(PY) benchmarks/gemm_throughput.py
	$(PY) benchmarks/inference_throughput.py
	$(PY) benchmarks/pretrain_throughput.py
	$(PY) benchmarks/finetune_throughput.py
	$(PY) benchmarks/tokenizer_throughput.py
	$(PY) benchmarks/hub_throughput.py
	$(PY) benchmarks/serving_load.py --start --random-weights

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# `make demo` runs the main job end to end on the bundled sample; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[hub,test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m paddle_electra.demo

# the default run: everything but tests marked slow (< 10 minutes on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/inference_throughput.py
	$(PY) benchmarks/pretrain_throughput.py
	$(PY) benchmarks/finetune_throughput.py
	$(PY) benchmarks/tokenizer_throughput.py
	$(PY) benchmarks/hub_throughput.py
	$(PY) benchmarks/serving_load.py --start --random-weights

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Quick start: `make tour` (the main job on embedded data), `make check` (the fast tests) and
# `make test` (every test). The tour installs requirements.txt only; the tests add
# requirements-test.txt (pytest, and torch with transformers to check the Hugging Face interop).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-test tour check test bench clean

setup: $(STAMP)

setup-test: $(TEST_STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $(TEST_STAMP)

tour: setup
	$(PY) -m experiments.tour --workdir=runs/tour

# Two pytest workers: much of the suite is single-threaded XLA compilation.
check: setup-test
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" tests

test: setup-test
	$(PY) -m pytest -q -n 2 --dist worksteal tests

bench: setup
	$(PY) -m experiments.bench --what=train_step --config=configs/gpt2.py:tiny

clean:
	rm -rf $(VENV) runs

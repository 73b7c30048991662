# Quick start: `make tour` (the main job on embedded data) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup tour test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

tour: setup
	$(PY) -m experiments.tour --workdir=runs/tour

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m experiments.bench --what=train_step --config=configs/gpt2.py:tiny

clean:
	rm -rf $(VENV) runs

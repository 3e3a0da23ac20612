# Two commands for a fresh machine with Python 3.10+:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# On a machine without a local copy of the corpora, Multi30k is downloaded into data/.
export NMT_DATA_DIR ?= $(if $(wildcard ../shared/data/multi30k),$(abspath ../shared/data),data)

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# torch is pinned and installed first: an unpinned torch pulls multi-GB CUDA wheels on CPU-only machines.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	@# Older checkouts installed this project as "nmt" (an unrelated project on the package index): drop that.
	$(BIN)/pip uninstall -q -y nmt 2>/dev/null || true
	$(BIN)/pip install -q -e '.[dev,align,sweeps,ctranslate2,serve,browser]'
	touch $@

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: install
	bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

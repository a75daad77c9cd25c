# HygieSync. Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv by itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install demo test bench clean

install: $(STAMP)

# torch first, pinned to the local CPU wheel: an unpinned torch would pull gigabytes of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	hygie demo-data
	dvc repro
	dvc metrics show

test: $(STAMP)
	python -m pytest

bench: $(STAMP)
	python benchmarks/prepare.py

clean:
	rm -rf data/prepared metrics/landmarks

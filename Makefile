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

# The demo trains a small model (64 px crops, 1200 steps: about 5 minutes on 2 CPU cores) as a DVC experiment named
# "demo". params.yaml is put back as it was afterwards, so the next `dvc repro` trains the real-user settings
# (160 px, 5000 steps); `dvc exp show` lists the demo run. See README, "Figures".
DEMO_PARAMS := -S build_crops.IMG_SIZE=64 -S train.steps=1200 -S train.eval_every=150 -S train.lr=0.002
SAVED_PARAMS := $(VENV)/params.before-demo.yaml

demo: $(STAMP)
	hygie demo-data
	cp params.yaml $(SAVED_PARAMS)
	dvc exp remove demo 2>/dev/null || true
	dvc exp run --name demo $(DEMO_PARAMS) || { mv $(SAVED_PARAMS) params.yaml; exit 1; }
	mv $(SAVED_PARAMS) params.yaml
	dvc metrics show
	@echo "rendered: data/rendered/new_audio.mp4"

test: $(STAMP)
	ruff check .
	ruff format --check .
	python -m pytest

# the README's "Figures": preparation, training throughput, rendering at 720p (the others: the command each gives)
bench: $(STAMP)
	python benchmarks/prepare.py
	python benchmarks/train.py --sizes 128 160 --steps 16
	python benchmarks/render.py --configs onnx:poisson onnx:poisson:blend onnx:poisson:retrieve onnx:feather

clean:
	rm -rf data/prepared data/rendered models metrics

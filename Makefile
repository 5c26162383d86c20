# Each target sets itself up: a .venv with the project installed (editable) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline

.PHONY: install train test test-fast bench lint clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## train the default experiment (digits_cnn); ARGS='key=value ...' for overrides
	$(BIN)/imgexp-train $(ARGS)

test: $(STAMP)  ## the whole suite, slow tests included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)  ## ratio benchmarks; figures go to benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks $(ARGS)

lint: $(STAMP)  ## ruff, and the layering contracts of pyproject.toml [tool.importlinter]
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

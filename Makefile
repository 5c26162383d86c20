# Each target sets itself up: a .venv holding exactly requirements.lock, plus the project
# (editable), on first use. A changed lock rebuilds the venv, so nothing of an older one stays.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements.lock
LOCKED := $(VENV)/$(LOCK)
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline

.PHONY: install lock train test test-fast bench lint clean-outputs

# pip (not uv) installs: it reads this machine's pip configuration (its package indexes).
# A lock rewritten with the same content (a `make lock` that changed nothing) keeps the venv.
$(LOCKED): $(LOCK)
	if cmp -s $(LOCK) $@; then touch $@; else \
		rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) \
		&& $(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK) \
		&& cp $(LOCK) $@; fi

$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m imgexp.tracking.environment $(LOCK)
	touch $(STAMP)

install: $(STAMP)

lock: $(LOCKED)  ## re-resolve requirements.lock from pyproject.toml; ARGS=--upgrade for the newest
	$(BIN)/uv pip compile -q --universal --generate-hashes --extra dev \
		--custom-compile-command "make lock" -o $(LOCK) pyproject.toml $(ARGS)

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

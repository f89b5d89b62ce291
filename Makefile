# Two commands do all the set-up: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_FACES ?= $(firstword $(VULTUS_TEST_FACES) ../shared/faces)
PHOTOS ?=
DEMO_DIR ?= .vultus-demo

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@$(BIN)/python -m vultus.demo --data-dir $(DEMO_DIR) $(if $(PHOTOS),--photos $(PHOTOS),--shared-faces $(SHARED_FACES))

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/search.py --sizes 100000
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) build *.egg-info

# The two commands of the README. Both create (or update) .venv in the repository root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs venv lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Light install (what a microscopist needs) + the built-in example.
demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/clusterspy demo --out demo_output

# Everything (train extra with the CPU torch pinned, integrations, dev tools) + the test suite.
test: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[train,hyperspy,particlespy,napari,tables,dev]"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

# The documentation site into docs/_build/html: every tutorial executed, warnings are errors.
docs: $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[train,hyperspy,particlespy,napari,docs]"
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

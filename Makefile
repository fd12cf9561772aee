# The README's two commands: `make demo` (the main job end to end on the
# default data) and `make test` (the test suite). Each works on a fresh
# machine: it creates .venv, installs the package, and gets the data.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo

.PHONY: demo test data clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

data:
	sh scripts/get_data.sh

demo: $(BIN)/.installed data
	$(BIN)/python scripts/demo.py --run-dir $(RUN_DIR)

test: $(BIN)/.installed data
	$(BIN)/pytest

clean:
	rm -rf $(VENV) runs models

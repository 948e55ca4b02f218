# Two commands on a fresh machine (see README):  make demo   and   make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test derivations html bench clean

# The stamp files re-run the install when pyproject.toml changes.
$(BIN)/python:
	@echo "Creating the virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing symelig and its dependencies (sympy, numpy, scipy, typer, array-api-compat) into $(VENV); this takes a minute or two"
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	@echo "Installing symelig with its test extra (pytest, hypothesis) into $(VENV); this takes a minute or two"
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/symelig derive categorical --param probs
	$(BIN)/symelig eval categorical --param probs --probs 0.69,0.1,0.2,0.01 --x 0

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# Generated kernels vs hand-written numpy and torch; writes bench/results.md and .json.
bench: $(VENV)/.installed-test
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet torch==2.13.0 \
		|| echo "torch could not be installed: its columns are left out"
	$(BIN)/python -c "import numba" 2>/dev/null || $(BIN)/python -m pip install --quiet numba \
		|| echo "numba could not be installed: its column is left out"
	$(BIN)/python bench/bench.py

derivations: $(VENV)/.installed
	$(BIN)/python -m symelig.pages derivations

# The browsable catalog (static pages, MathML): open site/index.html
html: $(VENV)/.installed
	$(BIN)/symelig html -o site/

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

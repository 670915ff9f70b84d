# `make test` and `make demo` create .venv in the repository root on first use and install the
# package into it (editable), so both work on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.14.1

.PHONY: test test-quick demo venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,video,hub,app]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The quick loop while editing: everything but the tests marked slow (under a minute on 2 cores).
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(PY) scripts/demo.py

clean-venv:
	rm -rf $(VENV)

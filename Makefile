# `make test` and `make demo` create .venv in the repository root on first use and install the
# package into it (editable), so both work on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.14.1
# The torchvision build of $(TORCH): timm (a test extra) needs torchvision, and an unpinned one could move torch.
TORCHVISION ?= torchvision==0.29.1

.PHONY: test test-quick mutation demo app venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)" "$(TORCHVISION)"
	$(PY) -m pip install -q -e ".[test,video,hub,app,onnx]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# The quick loop while editing: everything but the tests marked slow (under a minute on 2 cores).
test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# Breaks the package on purpose (in a scratch copy) and checks that the tests catch every break; not in CI (it takes
# minutes). See README.md, Development.
mutation: $(STAMP)
	$(PY) scripts/mutation_check.py

demo: $(STAMP)
	$(PY) scripts/demo.py

# The web app on the demo's last snapshot (run folders and snapshot numbers are zero-padded, so the
# sorted list ends with the newest); `make app APP_NETWORK=PKL` opens another network.
APP_NETWORK ?= $(lastword $(sort $(wildcard demo-runs/runs/*/network-snapshot-*.pkl)))

app: $(STAMP)
	@test -n "$(APP_NETWORK)" || { echo "make app: no demo snapshot in demo-runs/runs/; run 'make demo' first, or give one: make app APP_NETWORK=PKL" >&2; exit 1; }
	$(PY) app.py --network=$(APP_NETWORK)

clean-venv:
	rm -rf $(VENV)

# Two entry points: `make fit` (set up + run the small default job) and `make test` (set up + test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup fit test test-fast bench clean

# torch is installed first and explicitly: this pins the CPU build (a plain resolve can pull a
# multi-GB CUDA build). constraints.txt holds the versions CI tests (pyproject.toml's ranges allow
# others). The stamp file makes setup re-run only when the dependency list changes.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test,ray]"
	touch $@

setup: $(VENV)/.installed

# A small PickAndPlace BMIL run (demos are generated on first use); see conf/ for full runs. The bmil
# command pins its numerics and one torch thread, so the run prints the same digits on any x86-64 CPU
# with AVX2 (docs/numerics.md).
fit: setup
	$(BIN)/bmil fit --config conf/pickplace_quick.yaml

# Two test processes: many tests wait on subprocesses, workers or Ray, so two keep both cores busy.
# A module that starts a Ray cluster keeps its tests in one process (xdist_group), so it starts once.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not slow"

bench: setup
	$(BIN)/python benchmarks/eval_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info

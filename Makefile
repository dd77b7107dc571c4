# Two entry points, both self-contained on a fresh machine:
#   make run   - .venv with the project, then the main job (rnnlab compare)
#   make test  - .venv with the test extras (pytest, hypothesis, torch), then pytest
# torch is installed with pip, never uv: pip finds the CPU wheel on this
# machine's disk, and an unpinned torch would pull a multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PRESET ?= default

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files so that a second `make test` does not reinstall anything.
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[fast]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/rnnlab compare --preset $(PRESET)

# After the whole suite, a fast subset (~2 min) in the two other configurations that must
# keep working: NumPy's loops without the BLAS pool, and numba hidden, as a plain
# `pip install rnnlab` (without the [fast] extra) has it.
FAST_TESTS := tests/test_parity_torch.py tests/test_optim.py tests/test_blas_pool.py \
              tests/test_inplace.py tests/test_probes.py tests/test_planner.py \
              tests/test_calibrate.py tests/test_gru.py tests/test_packed.py \
              tests/test_crossover.py

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest
	RNNLAB_BACKEND=numpy RNNLAB_BLAS_POOL=0 $(BIN)/python -m pytest -q $(FAST_TESTS) \
	    -k "not numba and not fused"
	RNNLAB_NUMBA=0 $(BIN)/python -m pytest -q $(FAST_TESTS)

bench: $(VENV)/.test-installed
	$(BIN)/rnnlab bench --vs torch

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info

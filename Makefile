# The quick start on a fresh machine with Python 3.10+ and make: `make demo`, `make test`.
# Each target creates .venv when missing and installs the project (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-thorough bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# A stamp file: reinstall only when pyproject.toml changes. The tests cover the recipe's optional
# extras (BLEU, plot, BPE) and the multi-rank tests (MPI) too, so both targets install them.
# The project's own dependencies go in first: with numpy and numba in, the Numba kernels compile
# into their cache (tests/warmup.py) on the second core while pip installs the extras; the
# warm-up stops when pip ends, and the suite's own warm-up goes on from there.
$(VENV)/.deps: pyproject.toml | $(PY)
	$(PIP) -e .
	$(PY) tests/warmup.py & warm=$$!; \
	$(PIP) -e ".[test,recipe,mpi]"; status=$$?; { kill $$warm; wait $$warm; } 2>/dev/null; \
	exit $$status
	touch $@

demo: $(VENV)/.deps
	$(PY) examples/demo.py

# One pytest process (tests/conftest.py compiles the kernels in a second one). Measured on the
# 2-core machine (7 Dec, fresh clones, one quiet sitting): pytest-xdist's two workers took 181 s
# and 318 s of CPU against 146 s and 238 s for this; pip --no-compile took 180 s.
test: $(VENV)/.deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-thorough: $(VENV)/.deps
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.deps
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# The quick start on a fresh machine with Python 3.10+ and make: `make demo`, `make test`.
# Each target creates .venv when missing and installs the project (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# --no-compile: pip byte-compiles every module it installs (matplotlib's, fonttools', ...: ~10 s
# of a fresh set-up); Python compiles the few that are imported, once, at their first import.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile

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

# The suite runs in one process per core (pytest-xdist). worksteal hands each process a
# contiguous half of the tests (a module's tests, and its module fixtures, stay in one process)
# and moves tests from the end of a busy one's queue to an idle one. PYTEST_ARGS="-n 0" runs it
# all in one process.
XDIST := -n auto --dist worksteal

test: $(VENV)/.deps
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-thorough: $(VENV)/.deps
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

bench: $(VENV)/.deps
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

# The quick start on a fresh machine with Python 3.10+ and make: `make demo`, `make test`.
# Each target creates .venv when missing and installs the project (editable) with what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
EXTRAS := test,recipe,mpi

.PHONY: demo test test-thorough bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# A stamp file: reinstall only when pyproject.toml changes. The tests cover the recipe's optional
# extras (BLEU, plot, BPE) and the multi-rank tests (MPI) too, so both targets install them.
# uv (installed into the venv by pip) installs them in ~8 s where pip took ~30 s (bench/RESULTS.md,
# 7 Dec); pip is the fallback where uv cannot (no uv wheel for the platform, or a package index
# only pip is configured for). --compile-bytecode, as pip does, and compileall for the project's
# own sources (an editable install compiles none): where PYTHONDONTWRITEBYTECODE is set, each
# process the tests start would otherwise compile them again. The project's own dependencies go
# in first, so the Numba kernels compile into their cache (tests/warmup.py) on the second core
# while the extras install.
UV = $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY)
$(VENV)/.deps: pyproject.toml | $(PY)
	$(PY) -m compileall -q tinygrad_tf nn models > /dev/null
	if $(PIP) uv && $(UV) -e .; then install="$(UV)"; \
	else echo "uv did not install the packages: pip does"; install="$(PIP)"; $(PIP) -e . || exit 1; fi; \
	$(PY) tests/warmup.py & warm=$$!; \
	$$install -e ".[$(EXTRAS)]" || { [ "$$install" != "$(PIP)" ] && $(PIP) -e ".[$(EXTRAS)]"; }; \
	status=$$?; { kill $$warm; wait $$warm; } 2>/dev/null; exit $$status
	touch $@

demo: $(VENV)/.deps
	$(PY) examples/demo.py

# One pytest process; tests/conftest.py compiles the kernels in a second one, which then runs
# tests/test_*.py and tests/nn/ (bench/RESULTS.md, 7 Dec). Measured on the 2-core machine (7 Dec,
# fresh clones, one quiet sitting): pytest-xdist's two workers took 181 s and 318 s of CPU
# against 146 s and 238 s for the one process then; pip --no-compile took 180 s.
test: $(VENV)/.deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-thorough: $(VENV)/.deps
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.deps
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis

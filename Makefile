# The README's two commands: `make demo` (the main job) and `make test` (every test).
# Both create or reuse the virtual environment in $(VENV) and install what is missing.
PYTHON ?= python3
VENV ?= .venv
# The CPU wheel of this pin lies on disk on the project's machines; elsewhere pip fetches it.
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fairpriv-installed

.PHONY: demo test check install lint notebooks-refresh bench paper clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[all]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fairpriv-lab demo --out demo_out

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

# The fast tier for iteration: ruff and the unit and integration tests, without the notebook
# executions, the browser and the tests marked slow. `make test` still runs everything.
check: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow and not notebooks and not browser"

lint: $(STAMP)
	$(PY) -m ruff check .

notebooks-refresh: $(STAMP)
	$(PY) -m fairpriv_lab.cli.notebook_tools refresh notebooks --small
	$(PY) -m fairpriv_lab.cli.notebook_tools warm

bench: $(STAMP)
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_audit.py
	$(PY) benchmarks/bench_cache.py

paper: $(STAMP)
	$(PY) benchmarks/paper_scale.py --preset adult-lr

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo_out

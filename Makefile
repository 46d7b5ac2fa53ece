# Two entry points, both self-contained on a fresh machine:
#   make run   - set up .venv and run `solbench run` (the default suite; a smoke subset on CPU)
#   make test  - set up .venv and run the test suite
# The venv sees system site-packages so that a GPU machine's own torch is reused, never replaced.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Installed only when no torch is importable at all. On the CPU machines this project is developed
# on, this version is a local CPU wheel; on a GPU box the preinstalled CUDA torch is kept.
TORCH_SPEC ?= torch==2.13.0
RUN_ARGS ?=

.PHONY: setup run test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -c "import triton" 2>/dev/null || $(PY) -m pip install -q "triton>=3.0" || echo "triton not installable here: our Triton kernels will be reported as skipped"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/solbench run $(RUN_ARGS)

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

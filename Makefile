# Two entry points, both self-contained on a fresh machine:
#   make run   - set up .venv and run `solbench run` (the whole catalog on a GPU; a quick smoke subset on
#                CPU), writing the records to $(OUT).jsonl and the HTML report to $(OUT).html
#   make test  - set up .venv and run the test suite
# The venv sees system site-packages so that a GPU machine's own torch is reused, never replaced.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Installed only when no torch is importable at all. On the CPU machines this project is developed
# on, this version is a local CPU wheel; on a GPU box the preinstalled CUDA torch is kept.
TORCH_SPEC ?= torch==2.13.0
RUN_ARGS ?=
# Where `make run` writes (a new pair of files per run; OUT=out/mine resumes that one instead).
ifndef OUT
OUT := out/run-$(shell date +%Y%m%d-%H%M%S)
endif
# Without a GPU, `make run` shows something in about a minute: our kernels (in Triton's interpreter)
# against eager torch on each operator's smallest smoke shape (torch.compile is left out there: its
# CPU compiles alone take several minutes). The budget stops starting new shapes after 120 s, for a
# loaded machine.
CPU_RUN_ARGS ?= --impls ours_triton,torch_eager --max-shapes 1 --time-budget 120

.PHONY: setup run test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -c "import triton" 2>/dev/null || $(PY) -m pip install -q "triton>=3.0" || echo "triton not installable here: our Triton kernels will be reported as skipped"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# What only the tests use, best effort: NVRTC for the JIT CUDA compile tests, Ray for the cluster tests.
$(VENV)/.test-extras: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[cuda]" || echo "cuda-bindings / NVRTC not installable here: the JIT CUDA compile tests will be skipped"
	$(PY) -m pip install -q -e ".[cluster]" || echo "ray not installable here: the cluster tests will be skipped"
	touch $@

setup: $(VENV)/.installed

run: setup
	@mkdir -p $(dir $(OUT))
	@if $(PY) -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then cpu=""; \
	 else cpu="$(CPU_RUN_ARGS)"; fi; \
	 $(VENV)/bin/solbench run --out $(OUT).jsonl --report $(OUT).html $$cpu $(RUN_ARGS)

test: setup $(VENV)/.test-extras
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# The newcomer's commands. Each one sets up what it needs from scratch first.
#   make demo   - set up, then run the bundled Wan graph through real ComfyUI 0.33, dense vs radial
#   make test   - set up both ComfyUI legs, lint (ruff), then run the whole test suite on each (0.33.0, then 0.3.75)
#   make serve  - set up, then start ComfyUI 0.33 with the pack at 127.0.0.1:8188
#                 (LEG=0.3.75 for the old version; COMFYUI_DIR=... for your own ComfyUI)
#   make bench  - kernel benchmark (needs a CUDA GPU); make bench-e2e: one ComfyUI step, full-size models
VENV ?= .venv
VENV_OLD ?= .venv-0.3.75
PY := $(VENV)/bin/python
PY_OLD := $(VENV_OLD)/bin/python
LEG ?= 0.33

.PHONY: setup setup-old lint test test-new test-old test-browser demo serve bench bench-e2e clean

setup:
	bash scripts/setup_env.sh 0.33

setup-old:
	bash scripts/setup_env.sh 0.3.75

# lint first (a ruff finding fails `make test`), then both legs; a failure in either fails
# `make test` (the second leg still runs)
test: setup setup-old lint
	@status=0; \
	echo "=== ComfyUI 0.33.0 leg ==="; $(PY) -m pytest tests || status=1; \
	echo "=== ComfyUI 0.3.75 leg ==="; $(PY_OLD) -m pytest tests || status=1; \
	exit $$status

lint: setup
	$(VENV)/bin/ruff check .

test-new: setup
	$(PY) -m pytest tests

test-old: setup-old
	$(PY_OLD) -m pytest tests

test-browser: setup
	$(PY) -m pytest tests/browser -s

demo: setup
	$(PY) scripts/demo.py

serve:
	bash scripts/setup_env.sh $(LEG)
	LEG=$(LEG) bash scripts/serve.sh

bench:
	python3 bench/bench_kernel.py

bench-e2e:
	python3 bench/bench_e2e.py

clean:
	rm -rf $(VENV) $(VENV_OLD) .comfyui .comfyui-0.3.75 .pytest_cache

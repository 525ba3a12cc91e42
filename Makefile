# The newcomer's commands. Each one sets up what it needs from scratch first.
#   make demo   - set up, then run a bundled Wan workflow through real ComfyUI, dense vs radial
#   make test   - set up, then run the test suite (CPU; GPU tests skip with a reason)
#   make serve  - set up, then start ComfyUI with the pack at 127.0.0.1:8188 (COMFYUI_DIR=... for yours)
#   make bench  - kernel benchmark (needs a CUDA GPU); make bench-e2e: one ComfyUI step, full-size models
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test test-browser demo serve bench bench-e2e clean

setup:
	bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest tests

test-browser: setup
	$(PY) -m pytest tests/browser -s

demo: setup
	$(PY) scripts/demo.py

serve: setup
	bash scripts/serve.sh

bench:
	python3 bench/bench_kernel.py

bench-e2e:
	python3 bench/bench_e2e.py

clean:
	rm -rf $(VENV) .comfyui .pytest_cache

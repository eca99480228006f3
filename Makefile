# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test setup setup-dev extras browser lint bench clean wheel-test container-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Core only: the camera engine needs no torch and no model download.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

# Everything, for the tests. constraints-cpu.txt pins the CPU build of torch.
$(VENV)/.dev: pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(PIP) install -q -c constraints-cpu.txt -e ".[diffusion,quantize,server,ray,dev]"
	touch $@ $(VENV)/.core

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

# Optional extras into .venv: make extras EXTRAS=diffusion,server (diffusion, server, ray,
# quantize). Without an NVIDIA GPU (no nvidia-smi) torch is the CPU build: PyTorch's CPU
# index and constraints-cpu.txt, no CUDA wheels. With one, pip's default CUDA build.
EXTRAS ?= diffusion
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
extras: $(VENV)/.core
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "NVIDIA GPU found: the CUDA build of torch"; \
		$(PIP) install -e ".[$(EXTRAS)]"; \
	else \
		echo "no NVIDIA GPU: the CPU build of torch"; \
		$(PIP) install --extra-index-url $(TORCH_CPU_INDEX) -c constraints-cpu.txt -e ".[$(EXTRAS)]"; \
	fi

demo: $(VENV)/.core
	$(BIN)/img2vid generate examples/coffee.png --preset preview --motion ken-burns \
		--zoom 1.4 --fade-in 0.5 --fade-out 0.5

browser:
	@scripts/install-chromium.sh

# Three workers (pytest-xdist), a test file each at a time: the tests of a file share their
# fixtures (tiny models, servers). Three on two cores fill the time the tests spend waiting on
# servers and subprocesses (6.9 min vs 8.7 with two). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 3
test: $(VENV)/.dev browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The wheel and sdist built, the wheel installed in fresh venvs: core only (also in `make
# test`) and with the server and diffusion extras (minutes: torch, gradio).
wheel-test: $(VENV)/.dev
	IMG2VID_WHEEL_EXTRAS=1 $(BIN)/python -m pytest -q tests/test_wheel.py

# The CPU image built with podman and run for real (root; apt-get install podman runc
# debootstrap); GPU=1 also builds the CUDA image and runs img2vid doctor in it.
container-test: $(VENV)/.core
	PYTHON=$(BIN)/python scripts/container-test.sh $(if $(GPU),--gpu)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-cache

# CPU benchmarks, one after another (run them on an idle machine); the diffusion benchmark
# wants a GPU: python benchmarks/diffusion_bench.py --device cuda --model i2vgen-xl
CPU_BENCHES := $(wildcard benchmarks/camera_bench.py benchmarks/interp_bench.py \
	benchmarks/batch_bench.py benchmarks/server_load.py)

bench: $(VENV)/.dev
	@for b in $(CPU_BENCHES); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs logs benchmarks/results .pytest_cache

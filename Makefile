# One command sets up and runs the main job offline (`make demo`); one sets up and runs the tests
# (`make test`). Both create .venv on first use, from the lock file: the same versions everywhere.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# cpu (default; the CPU build of PyTorch) or cuda (CUDA 12.6, the image's set, for a CUDA host).
FLAVOR ?= cpu
LOCK := locks/$(FLAVOR).txt
TORCH_PIN := locks/torch-$(FLAVOR).in
# PyTorch's own wheel page for that build, searched for torch alone: PyPI's Linux torch is the
# CUDA 13 build, which would bring several GB of nvidia-* packages to a CPU machine. PyPI stays the
# index for everything else.
TORCH_BUILD_cpu := cpu
TORCH_BUILD_cuda := cu126
TORCH_LINKS ?= https://download.pytorch.org/whl/$(TORCH_BUILD_$(FLAVOR))/torch/
# The CPU lock holds torch's own dependencies, so torch comes alone; the CUDA lock leaves out the
# nvidia-* packages (see locks/cuda.txt), which come with torch, held to the lock's other versions.
TORCH_DEPS_cpu := --no-deps
TORCH_DEPS_cuda := -c $(LOCK)
PYTEST_ARGS ?=

.PHONY: setup demo test image-test lock lock-check clean

setup: $(VENV)/.installed

# torch first, from its build's page; then the rest of the lock; then pipesql itself without
# dependencies (the lock has them all). The lock is copied into the environment: every manifest
# records its hash (pipesql.storage.manifest).
$(VENV)/.installed: pyproject.toml $(LOCK) $(TORCH_PIN)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_DEPS_$(FLAVOR)) --find-links $(TORCH_LINKS) -r $(TORCH_PIN)
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	cp $(LOCK) $(VENV)/pipesql.lock
	touch $@

demo: setup
	$(VENV)/bin/pipesql pipeline

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The image built and every compose job run as a container, as a user runs them (docker/image_test.py,
# docs/containers.md "CI"): podman, a Debian bookworm base made here, the CPU torch build. A GPU
# host: make image-test IMAGE_TEST_ARGS="--engine docker --base cuda --gpus".
IMAGE_TEST_ARGS ?=
image-test: setup
	$(PY) docker/image_test.py $(IMAGE_TEST_ARGS)

# Recompile the lock files after changing pyproject.toml (see locks/compile.py), or check them (CI).
lock: setup
	$(PY) locks/compile.py
lock-check: setup
	$(PY) locks/compile.py --check

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis

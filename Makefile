# Two commands do all set-up on a fresh machine (Python 3.11 + pip):
#   make demo   -> creates .venv, installs pinned dependencies, runs the pipeline on config.yaml
#   make test   -> same install, then the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# Set TORCH_INDEX_URL to a CPU wheel index to avoid the CUDA build on GPU-less machines that
# have no local CPU wheel (e.g. TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu).
TORCH_INDEX_URL ?=
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast test-faults lint report clean benchmark slurm-up slurm-down benchmark-dag gpu-check

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# Byte-compile on every core: pip compiles one file at a time (62 s of the install on 2 cores,
	@# 29 s this way). Test folders are left out; a file that does not compile under this Python is
	@# skipped, as pip skips it (compileall then exits 1).
	$(BIN)/python -m compileall -q -j 0 -x '/tests?/|/testing/_internal/' \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null || true
	touch $@

demo: install
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml --rerun-incomplete --scheduler greedy
	@echo "Results: results/tables, results/figures. HTML report: make report"

report: install
	$(BIN)/snakemake --cores $(CORES) --configfile config.yaml --report report.html

# The long form of the fault-injection suite (marker faults: a SIGKILL inside every stage) is
# left out of `make test`, which runs its bounded subset; `make test-faults` runs all of it.
# --durations: the 15 slowest tests close the log, so a slow CI run shows where its time went.
test: install
	$(BIN)/python -m pytest -q -ra --durations=15 -m "not faults" tests

test-faults: install
	$(BIN)/python -m pytest -q -ra tests/workflow/test_faults.py

test-fast: install
	$(BIN)/python -m pytest -q -ra -m "not slow and not slurm" tests

lint: install
	$(BIN)/snakemake --lint --configfile config.yaml

benchmark: install
	$(BIN)/python benchmarks/bench_itermask.py

benchmark-dag: install
	$(BIN)/python benchmarks/dag_scale.py

gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

slurm-up:
	bash tools/slurm_cluster/up.sh

slurm-down:
	bash tools/slurm_cluster/down.sh

clean:
	rm -rf results data/demo .snakemake report.html

# The two commands of the README: `make run` and `make test`. Both set up .venv first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.benchbench-installed
STUDY  ?= config/config.yaml
# One thread per rank unless a study says otherwise; never let BLAS oversubscribe the cores.
export OMP_NUM_THREADS ?= 1

.PHONY: setup run test test-fast lint clean slurm-profile

$(STAMP): requirements-ci.txt constraints-ci.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-ci.txt -c constraints-ci.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

## make run: the default study (config/config.yaml), local executor, profiles/default
run: setup
	$(VENV)/bin/snakemake --configfile $(STUDY)
	@echo "Report: $(CURDIR)/$$($(VENV)/bin/benchbench path report --config $(STUDY))"

## make test: lint, then the whole test suite (multi-process and workflow tests included)
test: setup lint
	$(PY) -m pytest

## make test-fast: lint, then every test that starts no ranks, Snakemake, Slurm job or browser (not slow, not slurm)
test-fast: setup lint
	$(PY) -m pytest -m "not slow and not slurm" -q

## make slurm-profile: link profiles/slurm to ~/.config/snakemake/slurm, so `snakemake --profile slurm` works
slurm-profile:
	mkdir -p $(HOME)/.config/snakemake
	ln -sfn $(CURDIR)/profiles/slurm $(HOME)/.config/snakemake/slurm
	@echo "snakemake --profile slurm  ->  $(CURDIR)/profiles/slurm"

## make lint: ruff (check and format), the package's floors (import-linter, .importlinter), snakemake --lint
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	@out=$$($(VENV)/bin/snakemake --lint 2>&1); echo "$$out" | grep -q "Congratulations, your workflow is in a good condition" \
		|| { echo "$$out"; echo "snakemake --lint found problems"; exit 1; }
	@echo "snakemake --lint: clean"

clean:
	rm -rf results/*/ .snakemake

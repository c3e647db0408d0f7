# The two commands of the README: `make book` and `make test`. Both create .venv and install the
# project (pyproject.toml is the one list of dependencies) when needed, so they work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Two torch threads per process: more only contend on small machines.
export OMP_NUM_THREADS ?= 2
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup book pipeline html test train-tiny clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@# torch's x86_64 wheel is a CUDA build: a new environment takes about 7 GB. Say so before pip fails halfway.
	@test -x $(PY) || free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); if [ "$${free:-99}" -lt 8 ]; then \
	  echo "make: only $$free GB free here; a new .venv needs about 8 GB (torch with its CUDA libraries). Free some space and run make again." >&2; exit 1; fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

_mathjax/mathjax/tex-svg.js: $(STAMP)
	ccs static

## book: run the pipeline for pipeline.yaml's models (only what changed) and build the HTML book
book: pipeline html
	@echo "The book: $(CURDIR)/_build/html/index.html"

# --keep-incomplete: an interrupted page stays as it was (pages are replaced atomically, never
# half-written), and --rerun-incomplete lets the next run redo it without a manual step.
# ccs.lifeline: Snakemake (and each `ccs run` under it, and its kernel) ends when make does, even by
# SIGKILL, at whatever point of its start-up: the launcher asks for SIGKILL on make's death before
# Snakemake starts, and exits at once if make is already gone. Make's pid is found by make itself
# before it starts the recipe ($(shell) of a recipe is expanded first), never by the recipe's shell,
# whose $$PPID is already init's when make dies first.
pipeline: $(STAMP)
	exec $(PY) -m ccs.lifeline $(shell echo $$PPID) KILL snakemake --cores all --quiet rules --keep-incomplete --rerun-incomplete --rerun-triggers mtime

html: $(STAMP) _mathjax/mathjax/tex-svg.js
	jupyter-book build . -W -n --keep-going --quiet

## test: lint and format check (ruff), then unit tests, nbval regression of every executed notebook, and the book build
test: $(STAMP) _mathjax/mathjax/tex-svg.js
	$(PY) -m ruff check
	$(PY) -m ruff format --check
	$(PY) -m pytest

## train-tiny: (re)train a concept-world CLIP of lib/ccs/data/zoo.yaml (MODEL=ccs-tiny by default; about
## 35 minutes on 2 CPU cores, minutes on a GPU), resuming from train-runs/$(MODEL) when interrupted, then
## export its best weights into lib/ccs/weights
MODEL ?= ccs-tiny
train-tiny: $(STAMP)
	ccs train-tiny --model $(MODEL) --out train-runs/$(MODEL) $(if $(PAIRS),--pairs $(PAIRS)) --threads $(or $(THREADS),2)
	ccs train-tiny --model $(MODEL) --out train-runs/$(MODEL) --export

clean:
	rm -rf _build .snakemake

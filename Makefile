# attnmel — two commands do everything on a fresh machine:
#   make book   set up .venv, run every chapter (PROFILE=smoke on synthetic data), build the HTML book
#   make test   set up .venv, lint, run the whole test suite (chapters included)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON  ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.attnmel-installed
PROFILE ?= smoke
DATA    ?=
ISIC2016 ?=
PH2     ?=
DEVICE  ?= auto
PYTEST_ARGS ?= --durations=25

.PHONY: help setup book test test-fast lint format lab bench browser clean

help:
	@echo "make book   [PROFILE=smoke|isic2017-cpu|paper|scratch|scratch-cpu] [DATA=path] [ISIC2016=path] [PH2=path] [DEVICE=auto|cpu|cuda]"
	@echo "            run every chapter and build the HTML book (PH2: a PH2 column in Table 2)"
	@echo "make test   lint + unit tests + every chapter on a test budget (smoke-mini, 32 px, 2 epochs) + a browser check of the book"
	@echo "make test-fast  lint + the unit tests only (no chapters, no browser, nothing marked slow)"
	@echo "make lint   ruff"
	@echo "make lab    JupyterLab on notebooks/ (rooted at the repository, so pairs stay in sync)"
	@echo "make bench  speed benchmarks (benchmarks/), not part of make test"

# JupyterLab reads settings overrides from <sys.prefix>/share/jupyter/lab/settings/overrides.d/: the project's
# (jupyter/lab-overrides.json) opens .py chapters as notebooks (the "Jupytext Notebook" viewer) by default.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.d/attnmel.json

setup: $(STAMP) $(LAB_SETTINGS)

$(LAB_SETTINGS): jupyter/lab-overrides.json | $(STAMP)
	@mkdir -p $(@D)
	cp $< $@

$(STAMP): pyproject.toml
	@echo "==> [setup] creating $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> [setup] installing attnmel with its [dev,book,lab] extras (torch resolves from the local wheel cache where pip is capped)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,book,lab]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (attnmel)" >/dev/null
	@touch $(STAMP)
	@echo "==> [setup] done"

book: $(STAMP)
	@echo "==> [book] profile=$(PROFILE) data=$(if $(DATA),$(DATA),<synthetic>) device=$(DEVICE)"
	$(PY) -m attnmel book --profile "$(PROFILE)" $(if $(DATA),--data "$(DATA)") --device "$(DEVICE)" \
	  $(if $(ISIC2016),--isic2016 "$(ISIC2016)") $(if $(PH2),--ph2 "$(PH2)")

lint: $(STAMP)
	@echo "==> [lint] ruff"
	$(VENV)/bin/ruff check attnmel tests notebooks benchmarks
	$(VENV)/bin/ruff format --check attnmel tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format attnmel tests benchmarks
	$(VENV)/bin/ruff check --fix attnmel tests notebooks benchmarks

# Headless Chromium for the rendering test; the test skips with a reason where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "==> [browser] installing Debian's chromium for the rendering test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null ) \
	    || echo "==> [browser] could not install chromium: the rendering test will be skipped"; }

# The unit tests alone, for the edit-test loop: chapters, the browser check and tests marked slow are left out.
test-fast: $(STAMP) lint
	@echo "==> [test-fast] pytest -m 'not slow and not notebook and not browser'"
	$(PY) -m pytest -m "not slow and not notebook and not browser" $(PYTEST_ARGS)

# After the suite, nbval re-executes the cheap chapters (01 data, 02 architecture, 07 reproducibility; not the
# training ones) that tests/test_chapters.py executed into build/executed, and checks they still run clean
# (--nbval-lax: no errors; outputs compared only in cells marked NBVAL_CHECK_OUTPUT).
NBVAL_DIR      := build/executed
NBVAL_CHAPTERS := 01 02 07
test: $(STAMP) lint browser
	@echo "==> [test] pytest (unit tests, every chapter on the test budget of tests/test_chapters.py, browser rendering)"
	@rm -rf $(NBVAL_DIR)
	$(PY) -m pytest $(PYTEST_ARGS)
	@set -e; notebooks=""; \
	for n in $(NBVAL_CHAPTERS); do for f in $(NBVAL_DIR)/$${n}_*.ipynb; do [ -e "$$f" ] && notebooks="$$notebooks $$f"; done; done; \
	if [ -n "$$notebooks" ]; then \
	  echo "==> [test] nbval --nbval-lax on the executed chapters$$notebooks"; \
	  $(PY) -m pytest --nbval-lax -p no:cacheprovider -q $$notebooks; \
	else \
	  echo "==> [test] nbval skipped: no executed chapters in $(NBVAL_DIR) (tests/test_chapters.py writes them; deselected?)"; \
	fi

# Rooted at the repository, so jupytext finds jupytext.toml and a save writes both files of a pair; the file
# browser opens on notebooks/. --allow-root only where Jupyter runs as root (containers).
lab: $(STAMP) $(LAB_SETTINGS)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --ContentsManager.preferred_dir=notebooks \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf book/_build book/executed runs .pytest_cache

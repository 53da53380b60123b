# Two commands do all set-up on a fresh machine (python3 + make):
#   make book   build the site into _build/html   (creates/reuses .venv)
#   make test   run every test                     (creates/reuses .venv)
# Re-running either when requirements.txt did not change installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
# Keep third-party services quiet and offline; cap BLAS/OpenMP threads so two
# notebook kernels on a 2-core machine do not oversubscribe it.
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export OMP_NUM_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Compiled bytecode is cached beside the sources (__pycache__/, git-ignored) even where the shell
# sets PYTHONDONTWRITEBYTECODE: otherwise every interpreter compiles the toolkit again and every
# pytest process rewrites every test module's asserts again (2.2 s per process on this machine).
# The grader's sandboxes set their own environment and write nothing.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: help venv bubblewrap chromium book book-instructors test lint lab labs check grade baseline baseline-check bench clean clean-workspaces

help:
	@echo "make book    build the book into _build/html (main job)"
	@echo "make test    run every test (ruff and mypy first: make lint)"
	@echo "make book-instructors   the instructor edition into _build/instructors/_build/html"
	@echo "make lab     open the labs in JupyterLab"
	@echo "make labs    regenerate labs/ and the grader's answer keys from solutions/"
	@echo "make check LAB=00   score your lab notebook in a fresh kernel"
	@echo "make baseline       regenerate eval_baseline.json from the production model"
	@echo "make bench   run the benchmarks in bench/"
	@echo "make clean   remove build output and lab workspaces"

venv: $(STAMP)

# The grader runs every submission in a bubblewrap sandbox, and the tests use it. Root (CI) gets
# the package from apt; anyone else is told which package to install. `make book` and
# `make lab` do not need it.
bubblewrap:
	@command -v bwrap > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap > /dev/null; \
	  else \
	    echo "error: the grader's sandbox needs bubblewrap: install the package 'bubblewrap' (sudo apt-get install bubblewrap)" >&2; exit 1; \
	  fi; }

# The browser tests (tests/test_site_browser.py) drive Debian's chromium through Playwright (no
# browser download). Root (CI) gets it from apt; elsewhere this only says so, and those tests
# fail naming the package.
chromium:
	@command -v chromium > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; \
	  else \
	    echo "note: the browser tests need chromium: install the package 'chromium' (sudo apt-get install chromium)" >&2; \
	  fi; }

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# The toolkit itself, editable: `import scripts.mlops` works from any folder, no sys.path edits.
	@rm -f $$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/mlops_labs.pth
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlops labs)" > /dev/null
	@# python3-forked: the same kernel, forked from a warm zygote (scripts/forkkernel; nbval uses it).
	$(PY) -m scripts.forkkernel install --sys-prefix > /dev/null
	@touch $(STAMP)

# The chapters' figures (scripts/book_charts.py) are executed once and kept in Jupyter Book's
# execution cache, which only notices edits to the cells themselves. Any change to the code or
# files they are drawn from empties the cache and touches the chapters that are notebooks (so
# Sphinx reads them again in every build folder): the next build draws the figures again.
FIGURE_CACHE := _build/.jupyter_cache
FIGURE_STAMP := _build/.figures.stamp
FIGURE_SOURCES := scripts/book_charts.py $(wildcard scripts/mlops/*.py scripts/mlops/*/*.py) \
  eval_baseline.json .github/workflows/deploy-gate.yml requirements.txt bench/results/contention.json

$(FIGURE_STAMP): $(FIGURE_SOURCES)
	rm -rf $(FIGURE_CACHE)
	touch $$(grep -l '^file_format: mystnb' book/*.md)
	@mkdir -p $(@D) && touch $@

book: $(STAMP) $(FIGURE_STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

# The instructor edition: the student book plus the reference solutions (their stored outputs,
# nothing is executed), the grading manifests as tables and the authoring guide. Its config and
# toc are generated into _instructors/ (git-ignored); the site has its own cache and folder.
book-instructors: $(STAMP) $(FIGURE_STAMP)
	$(PY) -m scripts.book_editions > /dev/null
	$(VENV)/bin/jupyter-book build . --config _instructors/_config.yml --toc _instructors/_toc.yml \
	  --path-output _build/instructors -W -n --keep-going
	@echo "Instructor edition: $(CURDIR)/_build/instructors/_build/html/index.html"

# Static checks first (seconds), then one pytest worker per core plus one: tests also wait (for a
# server's health check, a browser, a kernel's idle status), and the extra worker fills those
# waits (2 cores: idle CPU 10 % -> 2 %). TEST_WORKERS=2 make test to choose. Which worker runs
# what: tests/work_units.py (whole files, longest first; the notebooks together, the grading tests
# together, the tests that fork from the warm interpreter together).
TEST_WORKERS ?= $(shell echo $$(( $$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 1) + 1 )))
test: $(STAMP) $(FIGURE_STAMP) lint | bubblewrap chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25 $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check scripts tests bench
	$(VENV)/bin/ruff format --check scripts
	$(VENV)/bin/mypy

lab: $(STAMP)
	$(VENV)/bin/jupyter lab labs/

# Student notebooks and manifests from the solutions, then the grader's answer keys (recorded by
# running each solution through the grading pipeline, so they need bubblewrap).
labs: $(STAMP) | bubblewrap
	$(PY) -m scripts.grading assign
	$(PY) -m scripts.grading record

LAB ?= 00
check: $(STAMP)
	$(PY) -m scripts.grading check $(wildcard labs/$(LAB)-*.ipynb)

baseline: $(STAMP)
	$(PY) -m scripts.mlops baseline-refresh

baseline-check: $(STAMP)
	$(PY) -m scripts.mlops baseline-refresh --check

bench: $(STAMP)
	$(PY) bench/run.py

clean-workspaces:
	rm -rf labs/.mlops solutions/.mlops .mlops

clean: clean-workspaces
	rm -rf _build _instructors

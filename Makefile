# Two entry points, each doing all set-up on a fresh machine:
#   make run    install, then `dvc repro` the default pipeline
#   make test   install, then run the test suite (what CI runs)
PY := .venv/bin/python

.venv/installed: requirements.txt
	python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup: .venv/installed

run: setup
	# stage commands call `python`: it must be the venv's
	. .venv/bin/activate && dvc repro

test: setup
	$(PY) -m pytest -q

.PHONY: setup run test

# TensorRT Performance Labs. Every target sets up what it needs in a local virtual environment (.venv).
#   make lab            set up, then open the course in JupyterLab
#   make lab-headless   the same on a server: no browser, prints the URL with its token
#   make test           set up, then run the whole test suite, notebooks included
#   make execute        run every lab headless on this machine into results/executed
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Jupyter refuses to run as root unless told; containers and cloud GPU boxes often run as root.
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup setup-lab lab lab-headless test test-unit test-labs execute clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

$(VENV)/.lab-installed: pyproject.toml $(VENV)/.test-installed
	$(BIN)/python -m pip install --quiet -e ".[lab,test]"
	touch $@

setup: $(VENV)/.test-installed
setup-lab: $(VENV)/.lab-installed

lab: setup-lab
	$(BIN)/jupyter lab $(ROOT_OK) labs/

lab-headless: setup-lab
	$(BIN)/jupyter lab --no-browser --ip=127.0.0.1 --port=8888 $(ROOT_OK) labs/

test-unit: setup
	$(BIN)/python -m pytest tests

test-labs: setup
	$(BIN)/python -m pytest --nbval labs/

test: test-unit test-labs

execute: setup
	$(BIN)/python -m common.execute

clean:
	rm -rf $(VENV) .cache results

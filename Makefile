# TensorRT Performance Labs. Every target sets up what it needs in a local virtual environment (.venv).
#   make lab            set up, then open the course in JupyterLab
#   make lab-headless   the same on a server: no browser, prints the URL with its token
#   make test           set up, then run the whole test suite, notebooks included
#   make report         run every lab headless on this machine, then write report/report.html
#                       workshop mode: make report LABS=00,01,03 SCALE=small BUDGET=20 (minutes)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Jupyter refuses to run as root unless told; containers and cloud GPU boxes often run as root.
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup setup-lab lab lab-headless test test-unit test-labs report clean

# pip prints one line per package and a bar per download: the first set-up fetches PyTorch (large).
PIP_INSTALL := $(BIN)/python -m pip install --progress-bar on --no-input

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else \
		f"$(PYTHON) is Python {v[0]}.{v[1]}; the course needs 3.10, 3.11 or 3.12: run make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	@echo "Setting up $(VENV): the course and its test tools (first time: several minutes)"
	$(PIP_INSTALL) --quiet --upgrade pip
	$(PIP_INSTALL) -e ".[test]" | grep -v "^Requirement already satisfied" || true
	$(BIN)/python -c "import common, torch, onnx, onnxruntime, modelopt, nbval"
	touch $@

$(VENV)/.lab-installed: pyproject.toml $(VENV)/.test-installed
	$(PIP_INSTALL) -e ".[lab,test]" | grep -v "^Requirement already satisfied" || true
	$(BIN)/python -c "import jupyterlab"
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

# Executed notebooks, results and report.html land in report/ (ignored); committed notebooks are untouched.
report: setup
	$(BIN)/python -m common.execute --report $(if $(LABS),--labs $(LABS)) $(if $(SCALE),--scale $(SCALE)) \
		$(if $(BUDGET),--budget-min $(BUDGET))

clean:
	rm -rf $(VENV) .cache results report

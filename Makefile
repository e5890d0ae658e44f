# TensorRT Performance Labs. Every target sets up what it needs in a local virtual environment (.venv).
#   make setup          set up .venv/: the course and its test tools (every target below does it first)
#   make setup-lab      the same, with JupyterLab
#   make lab            set up, then open the course in JupyterLab (at the course folder, on lab 00)
#   make lab-headless   the same on a server: no browser, prints the URL with its token
#   make test           set up, then run the whole test suite, notebooks included
#   make test-trt       with TensorRT and a GPU: the live TensorRT self-test (run it before the labs)
#   make report         run every lab headless on this machine, then write report/report.html
#                       workshop mode: make report LABS=00,01,03 SCALE=small BUDGET=20 (minutes)
#   make plan           which labs fit BUDGET on this machine, from recorded durations; runs nothing
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Jupyter refuses to run as root unless told; containers and cloud GPU boxes often run as root.
ROOT_OK := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup setup-lab lab lab-headless test test-unit test-labs test-trt report plan clean

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

# JupyterLab is rooted at the course folder (README, docs/, results/ one click away) and opens lab 00;
# .jupyter/ adds the course's settings (that start page, no news pop-up) to the user's own.
JUPYTER_LAB := JUPYTER_CONFIG_PATH=$(CURDIR)/.jupyter$(if $(JUPYTER_CONFIG_PATH),:$(JUPYTER_CONFIG_PATH)) $(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) $(ROOT_OK)

lab: setup-lab
	$(JUPYTER_LAB)

lab-headless: setup-lab
	$(JUPYTER_LAB) --no-browser --ip=127.0.0.1 --port=8888

test-unit: setup
	$(BIN)/python -m pytest tests

test-labs: setup
	$(BIN)/python -m pytest --nbval labs/

test: test-unit test-labs

# Which course features work with this TensorRT on this GPU; the summary also goes to results/trt-selftest.json.
test-trt: setup
	$(BIN)/python -m pytest tests/trt_live -m trt -rs

# Executed notebooks, results and report.html land in report/ (ignored); committed notebooks are untouched.
RUN_ARGS = $(if $(LABS),--labs $(LABS)) $(if $(SCALE),--scale $(SCALE)) $(if $(BUDGET),--budget-min $(BUDGET))

report: setup
	$(BIN)/python -m common.execute --report $(RUN_ARGS)

plan: setup
	$(BIN)/python -m common.execute --plan $(RUN_ARGS)

clean:
	rm -rf $(VENV) .cache results report

# Two commands set everything up on a fresh machine (Python 3.10+):
#   make run    create .venv, install mmoe, run the main job (the paper's synthetic study)
#   make test   create .venv, install mmoe with test tools, run the test suite
PYTHON ?= python3
VENV   := .venv
PIP    := $(VENV)/bin/pip install -q -c constraints.txt

.PHONY: run test install lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev,tune,export,serve,tensorboard]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/mmoe reproduce synthetic

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) results

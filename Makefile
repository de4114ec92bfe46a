# Everything runs from a venv in .venv, created on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv test lint faults demo bench soak services clean

venv: $(STAMP)

$(STAMP): setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

services:
	bash .ci/services

test: venv services lint
	$(PY) tests/pytest_gevent.py -q -p no:cacheprovider tests

# ruff (ruff.toml) and mypy (setup.cfg [mypy]): part of make test and so of CI.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

# The fault suite at full size (10,000-job streams, 20 kills, a 30 s outage); make test runs
# a short version. -s shows each scenario's figures as it ends.
faults: venv services
	FAULTS_SCALE=full $(PY) tests/pytest_gevent.py -q -s -p no:cacheprovider tests/faults

demo: venv services
	$(PY) examples/callbacks/demo.py

bench: venv services
	$(PY) bench/run.py
	$(PY) bench/http_cpu.py
	$(PY) bench/listen_render.py
	$(PY) bench/failed_triage.py

# An hour of QUEUE=* FIBERS=100 under a steady stream, printing RSS every 10 s (issue 3).
soak: venv services
	$(PY) bench/soak.py --minutes 60 --rate 300

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

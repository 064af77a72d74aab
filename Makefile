# The two commands a newcomer needs:  make serve   and   make test
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.meshgate-installed
NATIVE  := $(wildcard native/*.cpp native/src/*.cpp native/include/meshgate/*.h)

.PHONY: install serve test lint typecheck proto proto-check bench clean

$(STAMP): pyproject.toml setup.py $(NATIVE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)            ## create .venv, install everything, build the native module

serve: install               ## a simulated vLLM host + the gateway with its embedded defaults
	@scripts/demo.sh

test: install proto-check    ## the whole test suite (what CI runs), then the stream path again on the pure-Python twin
	$(VENV)/bin/pytest -q
	MESHGATE_NATIVE=0 $(VENV)/bin/pytest -q tests/backends tests/integration

lint: install                ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto: install               ## regenerate the gRPC stubs from proto/
	$(PY) scripts/genproto.py

proto-check: install
	$(PY) scripts/genproto.py --check

bench: install               ## every benchmark; JSON in benchmarks/results/
	$(PY) -m benchmarks.run

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache router/native/_native*.so

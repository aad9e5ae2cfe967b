# Every target runs inside the project's environment through tools/in-env, which builds it on
# first use (a venv, or a Debian 13 root file system where the host's glibc is too old for TFX).
IN_ENV := tools/in-env
DATA ?= data/co2_weekly_mlo.csv
DEMO_OUTPUT ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-all test-env lint env lock clean

## demo: run the pipeline on the bundled data, serve the pushed model, forecast over gRPC
demo:
	$(IN_ENV) lstm-forecast demo --data $(DATA) --output $(DEMO_OUTPUT)

## test: the test suite without the tests marked slow (one full pipeline run is in it)
test:
	$(IN_ENV) python -m pytest -m "not slow" $(PYTEST_ARGS)

## test-all: every test
test-all:
	$(IN_ENV) python -m pytest $(PYTEST_ARGS)

## test-env: tools/in-env's own tests, run from the host (they start the environment themselves)
test-env:
	python3 -m pytest --noconftest -p no:cacheprovider tests/test_in_env.py $(PYTEST_ARGS)

## lint: ruff over the code
lint:
	$(IN_ENV) ruff check .

## env: build the environment (if needed) and report what it holds
env:
	$(IN_ENV) python -c "import sys, tfx, tensorflow as tf; print('Python', sys.version.split()[0], '| TFX', tfx.__version__, '| TensorFlow', tf.__version__)"

## lock: re-resolve requirements/*.in and freeze the result into requirements.lock
lock:
	{ echo "# Frozen from a resolved environment (Debian 13, Python 3.13) by 'make lock'; do not edit by hand."; \
	  echo "# Installed as constraints together with requirements/*.in by tools/in-env."; \
	  LSTM_FORECAST_NO_LOCK=1 $(IN_ENV) pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

## clean: remove run outputs (the cached environment stays; see tools/in-env)
clean:
	rm -rf runs

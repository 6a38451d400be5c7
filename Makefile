# The verbs a user types. Every target bootstraps what it needs (uv, the venv) when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION ?= 0.13.9
VENV := .venv
CONFIG ?= configs/local.yaml
SCALE ?= 0.05
DATE ?= 2015-09-18

# uv: the one on PATH, else a private copy in .tools/ installed from PyPI.
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export OPENBLAS_NUM_THREADS := 1

.PHONY: help
help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(if $(findstring .tools,$(UV)),.tools/bin/uv)
	# pyspark reinstalled whole (pyproject); bytecode compiled once here, as in docker/Dockerfile,
	# so that every stage and test process skips compiling Airflow, GX and MLflow on import
	# (nothing is written back where PYTHONDONTWRITEBYTECODE is set).
	$(UV) sync --frozen --python $(PYTHON) --reinstall-package pyspark --compile-bytecode
	@touch $@

.PHONY: install
install: java $(VENV)/.synced  ## create the venv from uv.lock

.PHONY: java
java:  ## check that Java 17+ (needed by Spark) is installed
	@command -v java >/dev/null || { echo "Java 17 or newer is required by Spark: install OpenJDK 17 (apt-get install openjdk-17-jre-headless) and retry." >&2; exit 1; }
	@v=$$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -1); \
	  [ "$${v:-0}" -ge 17 ] || { echo "Java 17 or newer is required by Spark, found '$$v': install OpenJDK 17 and retry." >&2; exit 1; }

.PHONY: demo
demo: install  ## generate a shop, run the nightly DAG through Airflow for DATE, print the summary
	$(VENV)/bin/python -m jobs.tools.demo --config $(CONFIG) --scale $(SCALE) --date $(DATE)

.PHONY: up
up: install  ## start Airflow, MLflow and S3 on 127.0.0.1 (synthetic shop landed for 3 days); prints URLs and login
	$(VENV)/bin/python -m jobs.tools.stack up --config $(CONFIG) --scale $(SCALE) --last-day $(DATE)

.PHONY: down
down:  ## stop every process `make up` started, by PID
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m jobs.tools.stack down; fi

.PHONY: status
status:  ## the running stack's services: processes and resident memory
	@$(VENV)/bin/python -m jobs.tools.stack status

.PHONY: chromium
chromium:  ## Debian's Chromium for the browser checks (installed with apt-get when missing, as root)
	@command -v chromium >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null || { echo "The browser test needs Chromium: apt-get install chromium (Debian), then retry." >&2; exit 1; }; \
	  apt-get install -y -q chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium >/dev/null; }; }

.PHONY: screenshots
screenshots: install chromium  ## look at the running stack (make up) in headless Chromium; PNGs in .local/stack/screenshots
	$(VENV)/bin/python -m jobs.tools.browse --config $(CONFIG)

.PHONY: spark-up
spark-up: install  ## start a Spark standalone master + worker on 127.0.0.1:7077 and package the jobs for --py-files
	$(VENV)/bin/python -m jobs.tools.cluster up --workdir .local/spark-cluster
	$(VENV)/bin/python -m jobs.tools.cluster package --out .local/dist

.PHONY: spark-down
spark-down:  ## stop the Spark cluster started by spark-up
	@if [ -x $(VENV)/bin/python ]; then $(VENV)/bin/python -m jobs.tools.cluster down --workdir .local/spark-cluster; fi

.PHONY: test
test: install  ## lint, unit and Spark transform tests, the DAG's structure, one whole night in process (minutes)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -m "not slow"

.PHONY: test-all
test-all: install chromium  ## make test's tests and the rest: Airflow runs, rerun identity, the stack and browser, the cluster, docker, MLlib
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

# make bench runs at scale 1 unless SCALE is given on the command line (make bench SCALE=0.2).
BENCH_SCALE := $(if $(filter command line,$(origin SCALE)),$(SCALE),1)
REPEAT ?= 1

.PHONY: bench
bench: install  ## the nightly run end to end on a generated shop (SCALE=1, REPEAT=1): per-stage time, CPU, memory; vs bare implicit
	$(VENV)/bin/python -m jobs.tools.bench --scale $(BENCH_SCALE) --config $(CONFIG) --repeat $(REPEAT) \
	  --out docs/benchmarks/stages-scale$(BENCH_SCALE).json

.PHONY: bench-real
bench-real: install  ## one night on a real export as delivered: DATA=<folder> CONFIG=<overlay> DATE=<its last day>; the model table
	@[ -n "$(DATA)" ] || { echo "usage: make bench-real DATA=<export folder> CONFIG=<overlay> DATE=<YYYY-MM-DD>" >&2; exit 2; }
	$(VENV)/bin/python -m jobs.tools.bench_real --data $(DATA) --config $(CONFIG) --date $(DATE) \
	  --out docs/benchmarks/real-$(notdir $(abspath $(DATA))).json

.PHONY: bench-mllib
bench-mllib: install  ## after make bench: implicit vs Spark MLlib ALS on the same split (slow: ~1 h at scale 1)
	$(VENV)/bin/python -m jobs.tools.bench_mllib --config $(CONFIG) --run-date 2015-09-18 \
	  --lake .local/bench/scale-$(BENCH_SCALE)/lake --out docs/benchmarks/mllib-scale$(BENCH_SCALE).json

.PHONY: lint
lint: install  ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: s3
s3: install  ## serve the local S3 endpoint (with what the demo published) until Ctrl-C
	$(VENV)/bin/python -m jobs.tools.s3_server --config $(CONFIG)

.PHONY: mlflow-ui
mlflow-ui: install  ## browse experiments and models at http://127.0.0.1:5000 until Ctrl-C
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri sqlite:///$(CURDIR)/.local/mlflow/mlflow.db

.PHONY: clean
clean:  ## remove generated data, the lake, MLflow and Airflow state (keeps the venv)
	rm -rf .local

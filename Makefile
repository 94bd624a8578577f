# glmix: `make demo` and `make test` are the two commands; each sets everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
SPARK_JARS := .cache/spark/jars/.spark-avro-4.1.1
SPARK_CLASSES := .cache/spark/classes-4.1.1.jsa
AZKABAN_LOADER := .cache/azkaban/classes/LoadProjects.class
MLFLOW_SERVER := .cache/mlflow/venv/.installed
BENCH ?=
export PATH := $(CURDIR)/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup jvm-deps install spark-jars spark-classes hadoop-jars azkaban-loader mlflow-server demo test test-unit test-integration bench lint cluster-up cluster-down cluster-status clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is needed)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

spark-jars: $(SPARK_JARS)

$(SPARK_JARS): jobs/pom.xml
	@command -v mvn >/dev/null || { echo "error: Maven (mvn) is needed once to fetch spark-avro"; exit 1; }
	rm -rf .cache/spark/jars
	mvn -q -B -f jobs/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.cache/spark/jars
	touch $@

# the class-data-sharing archive local Spark runs start from (glmix/spark/class_archive.py; ~70 s once)
spark-classes: $(SPARK_CLASSES)

$(SPARK_CLASSES): $(INSTALLED) $(SPARK_JARS)
	$(PY) -m glmix.spark.class_archive

# Azkaban's own Flow 2.0 loader (azkaban-common 3.58.0 from Maven Central), the tests' oracle for flow validation
azkaban-loader: $(AZKABAN_LOADER)

$(AZKABAN_LOADER): tests/azkaban_loader/pom.xml tests/azkaban_loader/LoadProjects.java tests/azkaban_loader/azkaban/spi/AzkabanException.java
	@command -v javac >/dev/null || { echo "error: a JDK (javac) is needed to build the Azkaban loader harness"; exit 1; }
	rm -rf .cache/azkaban
	mvn -q -B -f tests/azkaban_loader/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/.cache/azkaban/jars
	javac -nowarn -d .cache/azkaban/classes -cp ".cache/azkaban/jars/*" tests/azkaban_loader/LoadProjects.java tests/azkaban_loader/azkaban/spi/AzkabanException.java

# a real MLflow tracking server for the tracking test, in its own environment (tests/mlflow_server)
mlflow-server: $(MLFLOW_SERVER)

$(MLFLOW_SERVER): tests/mlflow_server/requirements.lock
	rm -rf .cache/mlflow/venv
	$(PYTHON) -m venv .cache/mlflow/venv
	.cache/mlflow/venv/bin/pip install -q -r tests/mlflow_server/requirements.lock
	touch $@

hadoop-jars:
	$(PYTHON) cluster/devcluster.py jars

demo: install spark-jars spark-classes
	$(PY) -m glmix.cli demo --output .demo

# everything the tests need, built two steps at a time where they do not depend on each other:
# the two Python environments and the Maven downloads at once (the Maven steps one after another:
# they share ~/.m2), then the class archive (which needs both) beside the linters
setup:
	@$(MAKE) --no-print-directory -j3 --output-sync=target install mlflow-server jvm-deps
	@$(MAKE) --no-print-directory -j2 --output-sync=target spark-classes lint

jvm-deps:
	@$(MAKE) --no-print-directory -j1 spark-jars azkaban-loader hadoop-jars

# two pytest sessions at once: the dev cluster's tests (which mostly wait for containers) and the
# others; each line is prefixed with its session, and the target fails when either fails
test: setup
	@set -o pipefail; \
	($(PY) -m pytest tests -m integration --basetemp=/tmp/glmix-tests-cluster -p no:cacheprovider --durations=25 2>&1 \
	  | sed -u 's/^/[cluster] /') & cluster=$$!; \
	$(PY) -m pytest tests -m "not integration" --basetemp=/tmp/glmix-tests-local --durations=25 2>&1 \
	  | sed -u 's/^/[local] /'; local=$$?; \
	wait $$cluster; cluster=$$?; \
	echo "make test: local tests exit $$local, cluster tests exit $$cluster"; \
	[ $$local -eq 0 ] && [ $$cluster -eq 0 ]

test-unit: install azkaban-loader mlflow-server
	$(PY) -m pytest -m "not integration" tests

test-integration: install spark-jars hadoop-jars azkaban-loader
	$(PY) -m pytest -m integration tests

bench: install spark-jars hadoop-jars
	$(PY) -m bench $(BENCH)

# ruff (style, complexity, annotations) and mypy (strict on the core packages: see pyproject.toml)
lint: install
	$(PY) -m ruff check glmix jobs launcher bench tests cluster
	$(PY) -m mypy

cluster-up:
	$(PYTHON) cluster/devcluster.py up

cluster-down:
	$(PYTHON) cluster/devcluster.py down

cluster-status:
	$(PYTHON) cluster/devcluster.py status

clean: cluster-down
	rm -rf $(VENV) .cache .cluster .demo .bench

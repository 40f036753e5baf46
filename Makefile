# Tickerbell: `make run` brings the product up, `make test` proves it. Both set themselves up.
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
export PYSPARK_PYTHON := $(CURDIR)/.venv/bin/python
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# every Procfile process but the one-shot release phase (honcho stops all when one exits)
PROCESSES = $(shell grep -oE '^[a-z_]+' Procfile | grep -vx release | tr '\n' ' ')

.PHONY: setup setup-test up down status topics migrate run test typecheck test-chaos soak bench clean

setup:
	@scripts/setup.sh run

setup-test:
	@scripts/setup.sh test

## infrastructure alone: Kafka (KRaft), Redis, topics, migrations
up: setup
	@scripts/kafka.sh start
	@scripts/services.sh start-redis
	@$(PY) -m events topics
	@$(PY) -m events migrate

down:
	@-scripts/kafka.sh stop
	@-scripts/services.sh stop

status:
	@scripts/kafka.sh status || true
	@scripts/services.sh status || true
	@$(PY) -m events status

topics:
	@$(PY) -m events topics

migrate:
	@$(PY) -m events migrate

## the whole product, every Procfile process, on the embedded defaults
run: up
	@$(PY) -m web admin demo
	@$(PY) -m predict ensure-model
	@$(PY) -m events banner
	@.venv/bin/honcho -f Procfile start $(PROCESSES)

## every test, against real services on loopback
test: setup-test
	@$(PY) -m mypy
	@scripts/kafka.sh start
	@scripts/services.sh start-redis
	@scripts/services.sh start-postgres
	@$(PY) -m pytest --ignore=tests/chaos $(PYTEST_ARGS)

## static types: mypy --strict over every package (configured in pyproject.toml)
typecheck: setup-test
	@$(PY) -m mypy

# Left out of `make test-chaos` (issue 15): the scale-out rows, which start clusters of their own and
# pass here (4 passed in 5 min 14 s on a quiet machine, beyond what CI's time allows beside the rest):
# test_scaleout.py (two engines on a three-broker cluster, one engine killed inside its transaction,
# one broker killed mid-round) and test_spark_cluster.py (a standalone Spark cluster losing a worker).
# The two-engine row's proof is also timing-bound: it needs the kill to land in a transaction holding
# tick alerts while ticks of the round remain (one run in three here caught a bar-alert one instead).
# The soak runs short here (60 s); `make soak` runs the long one. `make test-chaos CHAOS_ROWS=` runs
# all. The Spark strike needs a machine that is not starved: its restarted job's first micro-batch took
# minutes at load 15-35 (Spark waits a fixed 10 s for a forked Python worker), 83 s for the whole row
# on a quiet one.
CHAOS_ROWS ?= not scaleout and not standalone_worker

## the fault suite (its own broker, Redis, receivers; the shared services are never stopped)
test-chaos: setup-test
	@scripts/kafka.sh start
	@scripts/services.sh start-redis
	@scripts/services.sh start-postgres
	@$(PY) -m pytest tests/chaos -k "$(CHAOS_ROWS)" $(PYTEST_ARGS)

## the long soak: the whole stack under a nemesis for CHAOS_SOAK_S seconds (default 300), results in docs/faults.json
soak: setup-test
	@scripts/kafka.sh start
	@scripts/services.sh start-redis
	@scripts/services.sh start-postgres
	@CHAOS_SOAK_S=$${CHAOS_SOAK_S:-300} $(PY) -m pytest tests/chaos -k soak -o timeout=3600 $(PYTEST_ARGS)

bench: up
	@$(PY) -m bench

clean:
	rm -rf var/kafka var/redis var/spark var/tickerbell.db*

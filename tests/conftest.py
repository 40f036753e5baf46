"""Session-wide fixtures: the real services every integration test talks to.

`make test` starts the broker, Redis and PostgreSQL before pytest; these
fixtures check they answer and give each test its own namespace: a unique
topic prefix (own topics), a unique PostgreSQL database, a unique Redis
database number is not needed because keys are prefixed per test.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from events.kafka import admin_client, ensure_topics, topic_specs, wait_for_coordinators
from events.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
PG_SOCKET_DIR = "/var/run/postgresql"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load_settings({**os.environ, "TICKERBELL_VAR": str(tmp_path_factory.mktemp("var"))})
    host, port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)
    if not _port_open(host, int(port)):
        pytest.fail(f"no Kafka broker on {host}:{port}: run the tests with `make test`, which starts it")
    wait_for_coordinators(settings)  # a fresh broker loads its offsets and transaction logs first
    return settings


@pytest.fixture
def kafka_settings(base_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings with a topic prefix unique to this test, and its topics created (2 partitions)."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = replace(base_settings, kafka_topic_prefix=prefix, kafka_partitions=2)
    ensure_topics(settings)
    yield settings
    admin_client(settings).delete_topics([s.name for s in topic_specs(settings)], operation_timeout=10)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    if not Path(PG_SOCKET_DIR).exists():
        pytest.fail("PostgreSQL is not running: run the tests with `make test`, which starts it")
    return f"postgresql+psycopg:///postgres?host={PG_SOCKET_DIR}"


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"tb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'create database "{name}"'))
    yield f"postgresql+psycopg:///{name}?host={PG_SOCKET_DIR}"
    with admin.connect() as conn:
        conn.execute(text(f'drop database if exists "{name}" with (force)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each supported kind, migrated to head."""
    from events.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return url

"""The chaos session: one stack of real Procfile processes on services of its own, shared by every
fault in turn (Spark's start-up is paid once). See ``test_faults.py`` for the faults."""

from __future__ import annotations

import getpass
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.db import make_engine
from events.kafka import EventProducer
from events.outbox import save_rule
from events.settings import Settings, load_settings
from tests.chaos import scenario
from tests.chaos.infra import CuttableProxy, DedicatedKafka, DedicatedRedis, Receivers
from tests.conftest import PG_SOCKET_DIR
from tests.e2e.stack import Stack, procfile, wait_for
from tests.support import topic_size

FAULTS = [
    "none (baseline)",
    "SIGKILL alert engine",
    "SIGKILL dispatcher",
    "SIGKILL Celery worker",
    "SIGKILL Spark job",
    "SIGKILL bridge",
    "Kafka broker down 20 s",
    "Redis restarted",
    "SMTP+webhook down 25 s",
    "database unreachable 20 s",
]
PROCESSES = ["relay", "alerts", "dispatch", "worker", "stream", "bridge"]
ENV = {
    "ALLOW_PRIVATE_WEBHOOKS": "true",
    "PUBLIC_URL": "http://tb.chaos",
    "SECRET_KEY": "chaos-test-only-key-7Hq2Lx9Vd4Rk8Zp3Wm6Tb1Ny5",  # a non-loopback PUBLIC_URL needs a strong key
    "BAR_SECONDS": "1",
    "STREAM_LATENESS_MS": "500",
    "STREAM_SHARDS": "2",
    # retries every 1-3 s for ~40 s: the receivers' 25 s outage is covered, no jitter to wait out
    "ALERTS_RETRY_SCHEDULE": "0,1,1,2,2,3,3,3,3,3,3,3,3,3,3,3",
    "ALERTS_RETRY_JITTER": "0",
    "ALERTS_SWEEP_INTERVAL_S": "1",
    # a killed worker's claims come back after this; a worker whose send went out keeps trying to
    # record it for half of it (the database fault lasts 20 s)
    "ALERTS_LEASE_S": "50",
    "ALERTS_STALE_AFTER_S": "0",
}
TICK_INTERVAL_S = 0.25   # the sequence flows over ~4 s of wall time
SETTLE_S = 180           # a fault's notifications must all arrive within this after the fault


class Chaos:
    """The running stack, its services, the rounds (one per fault) and the rows counted so far."""

    def __init__(self, workdir: Path, admin_url: str) -> None:
        self.workdir = workdir
        self.kafka = DedicatedKafka(workdir / "kafka")
        self.redis = DedicatedRedis(workdir)
        self.proxy = CuttableProxy(f"{PG_SOCKET_DIR}/.s.PGSQL.5432")
        self.receivers = Receivers()
        self.db_name = f"tb_chaos_{uuid.uuid4().hex[:10]}"
        self.admin_url = admin_url
        self.direct_url = f"postgresql+psycopg:///{self.db_name}?host={PG_SOCKET_DIR}"
        self.rounds: dict[str, scenario.Round] = {}
        self.rows: dict[str, scenario.Row] = {}
        self.stack: Stack | None = None
        self.sessions: sessionmaker[Session] | None = None
        self.settings: Settings | None = None
        self.restarted: list[str] = []

    # --- set-up and tear-down -------------------------------------------------------------------
    def start(self) -> None:
        self.kafka.start()
        self.redis.start()
        self.proxy.restore()
        self.receivers.start()
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'create database "{self.db_name}"'))
        admin.dispose()
        proxied = (f"postgresql+psycopg://{getpass.getuser()}@127.0.0.1:{self.proxy.port}/{self.db_name}"
                   "?sslmode=disable&gssencmode=disable")
        prefix = f"c{uuid.uuid4().hex[:8]}."
        self.stack = Stack.create(self.workdir / "stack", prefix, KAFKA_BOOTSTRAP_SERVERS=self.kafka.bootstrap,
                                  REDIS_URL=self.redis.url, DATABASE_URL=proxied,
                                  SMTP_URL=f"smtp://127.0.0.1:{self.receivers.smtp_port}", **ENV)
        release = self.stack.run(procfile()["release"], timeout_s=180)
        assert release.returncode == 0, release.stdout + release.stderr
        self.settings = load_settings(self.stack.env)
        self.sessions = sessionmaker(make_engine(self.direct_url), expire_on_commit=False)
        self._create_rules()
        self.stack.start("relay")
        rules_topic = self.settings.topic("rules")
        wait_for(lambda: topic_size(self.settings, rules_topic) >= 2 * len(FAULTS), 60,  # type: ignore[arg-type]
                 "the relay to publish every rule")
        # the engine loads the whole rules topic at start: every rule is known before the first tick
        for name in PROCESSES[1:]:
            self.stack.start(name)

    def _create_rules(self) -> None:
        assert self.sessions is not None and self.settings is not None
        t0 = (int(time.time()) - 7200) * 1000  # event times of the past: the far future is refused
        with self.sessions() as s:
            user = models.User(email="chaos@example.com", password_hash="x")
            s.add(user)
            s.flush()
            mail = models.Channel(user_id=user.id, kind="email", name="mail", target="trader@example.com",
                                  confirmed_at=models.utcnow())
            hook = models.Channel(user_id=user.id, kind="webhook", name="hook",
                                  target=f"http://127.0.0.1:{self.receivers.http_port}/hook",
                                  secret="whsec_" + "Y2hhb3MtY2hhb3MtY2hhb3MtY2hhb3MtMTIzNDU2Nzg=",
                                  body_template=scenario.WEBHOOK_BODY)
            s.add_all([mail, hook])
            s.flush()
            for k, fault in enumerate(FAULTS):
                symbol = f"CH{k:02d}"
                ids = []
                for series in ("price", "close"):
                    rule = models.Rule(user_id=user.id, symbol=symbol, frequency="every_time", version=1,
                                       condition={"series": series, "op": "crossing_up", "value": 150},
                                       channels=[mail, hook], message=scenario.MESSAGE)
                    s.add(rule)
                    s.flush()
                    save_rule(s, rule, self.settings)
                    ids.append(rule.id)
                self.rounds[fault] = scenario.Round(fault, symbol, ids[0], ids[1],
                                                    {"email": mail.id, "webhook": hook.id}, t0 + k * 60_000)
            s.commit()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.stop_all()
        self.receivers.stop()
        self.redis.stop()
        self.kafka.stop()
        self.proxy.cut()
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'drop database if exists "{self.db_name}" with (force)'))
        admin.dispose()

    # --- a fault in turn ------------------------------------------------------------------------
    def supervise(self) -> None:
        """Start again any process that exited (a platform restarts a crashed dyno); note it."""
        assert self.stack is not None
        for name, proc in list(self.stack.procs.items()):
            if not proc.alive():
                self.restarted.append(name)
                self.stack.restart(name)

    def kill_and_restart(self, name: str) -> None:
        assert self.stack is not None
        self.stack.kill(name)
        hold(2)  # the process stays dead while ticks flow
        self.stack.restart(name)

    def deliveries_settled(self, rnd: scenario.Round) -> bool:
        """Every delivery row of the round's alerts is ``delivered`` (none pending, sending or failed)."""
        assert self.sessions is not None
        alert_ids = [hook.rsplit(".c", 1)[0] for hook in (v["webhook"] for v in rnd.expected().values())]
        with self.sessions() as s:
            rows = s.scalars(select(models.Delivery.status).where(models.Delivery.alert_id.in_(alert_ids))).all()
        return len(rows) == 2 * len(alert_ids) and set(rows) == {"delivered"}

    def run_round(self, fault: str, inject: Callable[[], None]) -> scenario.Row:
        """Flow the round's ticks, inject the fault half-way, wait until its notifications settle."""
        assert self.settings is not None
        rnd = self.rounds[fault]
        self.restarted = []
        ticks = rnd.ticks()
        sent = threading.Semaphore(0)
        errors: list[BaseException] = []

        def flow() -> None:
            try:
                producer = EventProducer(self.settings)  # type: ignore[arg-type]
                for t in ticks:
                    producer.produce(t)
                    producer.raw.poll(0)
                    sent.release()
                    hold(TICK_INTERVAL_S)  # pacing: the sequence flows while the fault happens
                producer.flush(150)  # through a broker outage
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=flow, daemon=True)
        thread.start()
        for _ in range(len(ticks) // 2):
            assert sent.acquire(timeout=30), "the tick producer stalled"
        inject()
        thread.join(180)
        assert not thread.is_alive() and not errors, f"producing the sequence failed: {errors}"

        def done() -> bool:
            self.supervise()
            row = scenario.count(rnd, self.receivers.got())
            return row.delivered == row.expected and self.deliveries_settled(rnd)

        try:
            wait_for(done, SETTLE_S, f"every notification of round {fault!r}", interval_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {scenario.count(rnd, self.receivers.got())}\n{self.logs()}") from None
        finally:
            self.rows[fault] = scenario.count(rnd, self.receivers.got(), ",".join(sorted(set(self.restarted))))
        return self.rows[fault]

    def recount(self) -> list[scenario.Row]:
        """Count every round again from everything received so far (late copies included)."""
        for fault, row in list(self.rows.items()):
            self.rows[fault] = scenario.count(self.rounds[fault], self.receivers.got(), row.restarts)
        return list(self.rows.values())

    def bridge_heartbeat(self) -> dict:
        """The bridge's last heartbeat in Redis (its counters since it started), or {}."""
        import json

        import redis

        assert self.stack is not None
        client = redis.Redis.from_url(self.redis.url, socket_timeout=2)
        try:
            raw = client.get(f"tickerbell:{self.stack.env['KAFKA_TOPIC_PREFIX']}proc:bridge")
        finally:
            client.close()
        return json.loads(raw) if raw else {}

    def logs(self) -> str:
        assert self.stack is not None
        return "\n".join(f"--- {name}\n{proc.tail(15)}" for name, proc in self.stack.procs.items())


def hold(seconds: float) -> None:
    """Keep a fault in place (or pace the ticks) for ``seconds``: a duration, not synchronisation."""
    threading.Event().wait(seconds)


_CHAOS: list[Chaos] = []


@pytest.fixture(scope="session")
def chaos(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Chaos]:
    c = Chaos(tmp_path_factory.mktemp("chaos"), postgres_admin_url)
    _CHAOS.append(c)
    try:
        c.start()
        yield c
    finally:
        c.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if not _CHAOS or not _CHAOS[0].rows:
        return
    terminalreporter.section("fault suite: notifications counted at the receivers")
    terminalreporter.write_line(scenario.HEADER)
    for row in _CHAOS[0].rows.values():
        terminalreporter.write_line(row.line())
    terminalreporter.write_line("(figures: tests/chaos/scenario.py Row; 'restarted' = exited during the fault)")

"""The chaos session: one stack of real Procfile processes on services of its own, shared by every
fault in turn (Spark's start-up is paid once). See ``test_faults.py`` for the faults."""

from __future__ import annotations

import getpass
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.db import make_engine
from events.contract import Tick
from events.contract_ids import tick_id
from events.kafka import EventProducer
from events.outbox import save_rule
from events.settings import Settings, load_settings
from tests.chaos import scenario
from tests.chaos.infra import CuttableProxy, DedicatedKafka, DedicatedRedis, HoldingProxy, KafkaService, Receivers
from tests.conftest import PG_SOCKET_DIR
from tests.e2e.stack import Stack, procfile
from tests.support import free_port, wait_for
from tests.support import topic_size

FAULTS = [
    "none (baseline)",
    "SIGKILL alert engine",
    "SIGKILL dispatcher",
    "SIGKILL Celery worker",
    "SIGKILL Spark job",
    "SIGKILL bridge",
    "Kafka broker down 10 s",
    "Redis restarted",
    "SMTP+webhook down 10 s",
    "database unreachable 8 s",
    "SIGKILL one of two engines",   # test_scaleout.py, on a three-broker cluster
    "Kafka broker killed (1/3)",
    "SIGKILL Spark worker (1/2)",   # test_spark_cluster.py, on a standalone master and two workers
]
PROCESSES = ["relay", "alerts", "dispatch", "worker", "stream", "bridge", "web"]
ENV = {
    "ALLOW_PRIVATE_WEBHOOKS": "true",
    "PUBLIC_URL": scenario.PUBLIC_URL,
    "SECRET_KEY": "chaos-test-only-key-7Hq2Lx9Vd4Rk8Zp3Wm6Tb1Ny5",  # a non-loopback PUBLIC_URL needs a strong key
    "BAR_SECONDS": "1",
    "STREAM_LATENESS_MS": "500",
    "STREAM_SHARDS": "2",
    # retries every 1-3 s for ~40 s: the receivers' 10 s outage is covered, no jitter to wait out
    "ALERTS_RETRY_SCHEDULE": "0,1,1,2,2,3,3,3,3,3,3,3,3,3,3,3",
    "ALERTS_RETRY_JITTER": "0",
    "ALERTS_SWEEP_INTERVAL_S": "1",
    # a killed worker's claims come back after this; a worker whose send went out keeps trying to
    # record it for half of it (the database fault lasts 8 s)
    "ALERTS_LEASE_S": "20",
    "ALERTS_STALE_AFTER_S": "0",
}
TICK_INTERVAL_S = 0.25   # the sequence flows over ~7 s of wall time
SETTLE_S = 300           # a fault's notifications must all arrive within this after the fault
SOAK_SYMBOLS = 100       # one webhook rule each, for the soak (test_soak.py)


@dataclass
class Strike:
    """A fault as it happened: what, when (epoch s), and what the target held at that moment."""

    target: str
    moment: str
    busy: str
    at: float = field(default_factory=time.time)


class LiveClient:
    """A Socket.IO client of the running ``web`` process, signed in with the chaos user's API
    token: its user room gets every ``alert`` the bridge emits; kept with arrival times."""

    def __init__(self, url: str, token: str) -> None:
        import engineio.payload
        import socketio

        # python-engineio's client refuses a polling response of more than 16 packets (a guard of
        # its own: the browser's client has none) and drops the connection with everything queued
        # for it. A restarted bridge replays its backlog in one burst, so the default turned the
        # bridge row's replay into "lost" alerts (14-21 of 24 on a quiet machine): count what the
        # bridge delivers, as a browser would receive it.
        engineio.payload.Payload.max_decode_packets = 100_000

        self.events: list[tuple[dict[str, Any], float]] = []
        self._lock = threading.Lock()
        self.client = socketio.Client(reconnection=True, reconnection_delay=0.5)
        self.client.on("alert", self._on_alert)
        self.url, self.token = url, token

    def _on_alert(self, data: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((data, time.time()))

    def connect(self) -> bool:
        try:
            self.client.connect(self.url, transports=["polling"], auth={"token": self.token}, wait_timeout=10)
        except Exception:  # noqa: BLE001 - the web process is still starting: try again
            return False
        return True

    def got(self) -> list[tuple[dict[str, Any], float]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self.client.disconnect()


class Chaos:
    """The running stack, its services, the rounds (one per fault) and the rows counted so far."""

    warm_up_s = 400.0   # for Spark's first bar (a subclass whose stack is heavier may wait longer)

    def __init__(self, workdir: Path, admin_url: str) -> None:
        self.workdir = workdir
        self.kafka: KafkaService = DedicatedKafka(workdir / "kafka")   # a subclass may run a cluster instead
        self.redis = DedicatedRedis(workdir)
        self.proxy = CuttableProxy(f"{PG_SOCKET_DIR}/.s.PGSQL.5432")
        self.receivers = Receivers()
        self.redis_hold = HoldingProxy(self.redis.port)   # the dispatcher's way to Redis (strikes.dispatcher)
        self.proc_env: dict[str, dict[str, str]] = {}
        self.db_name = f"tb_chaos_{uuid.uuid4().hex[:10]}"
        self.admin_url = admin_url
        self.direct_url = f"postgresql+psycopg:///{self.db_name}?host={PG_SOCKET_DIR}"
        self.rounds: dict[str, scenario.Round] = {}
        self.rows: dict[str, scenario.Row] = {}
        self.soak_rules: dict[str, int] = {}   # symbol -> rule id
        self.hook_channel = self.mail_channel = 0
        self.history_owed: dict[scenario.Key, str] = {}   # every notification owed so far, for the checker
        self.stack: Stack | None = None
        self.live: LiveClient | None = None
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
                                  KAFKA_REPLICATION_FACTOR=str(self.kafka.replication_factor),
                                  REDIS_URL=self.redis.url, DATABASE_URL=proxied,
                                  SMTP_URL=f"smtp://127.0.0.1:{self.receivers.smtp_port}", **ENV)
        release = self.stack.run(procfile()["release"], timeout_s=180)
        assert release.returncode == 0, release.stdout + release.stderr
        self.settings = load_settings(self.stack.env)
        self.sessions = sessionmaker(make_engine(self.direct_url), expire_on_commit=False)
        self._create_rules()
        self.stack.start("relay")
        rules_topic = self.settings.topic("rules")
        settings = self.settings
        wait_for(lambda: topic_size(settings, rules_topic) >= 2 * len(FAULTS) + SOAK_SYMBOLS,
                 60, "the relay to publish every rule")
        # the engine loads the whole rules topic at start: every rule is known before the first tick
        self.proc_env = {"web": {"PORT": str(free_port())}, "dispatch": {"REDIS_URL": self.redis_hold.url}}
        for name, (entry, env) in self.instances().items():
            self.proc_env.setdefault(name, {}).update(env)
            self.stack.start(name, procfile()[entry], **self.proc_env[name])
        self.live = LiveClient(f"http://127.0.0.1:{self.stack.procs['web'].env['PORT']}", self._token())
        wait_for(self.live.connect, 90, "a Socket.IO client to connect to the web process", interval_s=1)
        self._warm_up()

    def instances(self) -> dict[str, tuple[str, dict[str, str]]]:
        """The processes started after the relay: name -> (its Procfile entry, its own environment).
        One each; a subclass may run an entry twice under two names (two engine instances)."""
        return {name: (name, {}) for name in PROCESSES[1:]}

    def _warm_up(self) -> None:
        """Ticks of a symbol nobody has a rule on, until Spark closes one of its bars: the job's first
        micro-batch (the slowest, a minute and more on a loaded machine) is behind us before round 1."""
        assert self.settings is not None
        producer = EventProducer(self.settings)
        t0 = (int(time.time()) - 7300) * 1000
        for seq in range(5):
            producer.produce(Tick(id=tick_id("warm", "WARM", seq), ts=t0 + seq * 1000, symbol="WARM", price=100.0,
                                  size=1.0, source="warm", seq=seq))
        producer.flush(30)
        settings, metrics = self.settings, self.settings.topic("metrics")
        def closed() -> bool:
            self.supervise()  # a job that died on a starved machine (Python worker failed to connect back)
            return topic_size(settings, metrics) > 0

        wait_for(closed, self.warm_up_s, "Spark to close its first bar", interval_s=1)

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
            for k in range(SOAK_SYMBOLS):
                symbol = f"SK{k:03d}"
                rule = models.Rule(user_id=user.id, symbol=symbol, frequency="every_time", version=1,
                                   condition={"series": "price", "op": "crossing_up", "value": 150},
                                   channels=[mail, hook], message=scenario.MESSAGE)
                s.add(rule)
                s.flush()
                save_rule(s, rule, self.settings)
                self.soak_rules[symbol] = rule.id
            self.hook_channel, self.mail_channel = hook.id, mail.id
            s.commit()

    def _token(self) -> str:
        """A new API token of the chaos user (only its hash is stored, as the web app does)."""
        from web.auth import hash_token, new_token

        assert self.sessions is not None
        token = new_token()
        with self.sessions() as s:
            user = s.scalar(select(models.User).where(models.User.email == "chaos@example.com"))
            assert user is not None
            s.add(models.ApiToken(user_id=user.id, name="chaos", token_hash=hash_token(token)))
            s.commit()
        return token

    def close(self) -> None:
        if self.live is not None:
            self.live.close()
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
                self.restart(name)

    def restart(self, name: str) -> None:
        """Start ``name`` again with the command and environment it first had."""
        assert self.stack is not None
        self.stack.start(name, self.stack.procs[name].command, **self.proc_env.get(name, {}))

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL ``name`` (running or frozen), keep it dead while ticks flow, start it again."""
        assert self.stack is not None
        self.stack.kill(name)
        hold(2)
        self.restart(name)

    def wait_receipts(self, fault: str, n: int, timeout_s: float = 60) -> None:
        """Until ``n`` of the round's notifications have arrived: the round is under way."""
        rnd = self.rounds[fault]
        wait_for(lambda: len(rnd.receipts(self.receivers.got())) >= n, timeout_s,
                 f"{n} notifications of round {fault!r}", interval_s=0.01)

    def deliveries_settled(self, rnd: scenario.Round) -> bool:
        """Every delivery row of the round's alerts is ``delivered`` (none pending, sending or failed)."""
        assert self.sessions is not None
        alert_ids = list(rnd.alerts().values())
        with self.sessions() as s:
            rows = s.scalars(select(models.Delivery.status).where(models.Delivery.alert_id.in_(alert_ids))).all()
        return len(rows) == 2 * len(alert_ids) and set(rows) == {"delivered"}

    def run_round(self, fault: str, inject: Callable[[], Strike | None],
                  live: bool = False, settle_s: float = SETTLE_S) -> tuple[Strike | None, scenario.Tally]:
        """Flow the round's ticks, let ``inject`` strike while they flow (it decides when), wait until
        the round's notifications settle; return the strike and the round's count (at the receivers,
        or with ``live`` of the ``alert`` events at the Socket.IO client)."""
        assert self.settings is not None and self.live is not None
        rnd = self.rounds[fault]
        self.restarted = []
        self.history_owed.update(scenario.owed_notifications(rnd))
        errors: list[BaseException] = []

        def flow() -> None:
            try:
                producer = EventProducer(self.settings)  # type: ignore[arg-type]
                for t in rnd.ticks():
                    producer.produce(t)
                    producer.raw.poll(0)
                    hold(TICK_INTERVAL_S)  # pacing: the sequence flows while the fault happens
                producer.flush(150)  # through a broker outage
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                errors.append(exc)

        thread = threading.Thread(target=flow, daemon=True)
        thread.start()
        strike = inject()
        thread.join(180)
        assert not thread.is_alive() and not errors, f"producing the sequence failed: {errors}"
        at = strike.at if strike is not None else None

        def counted() -> scenario.Tally:
            if live:
                return scenario.count_live(rnd, self.live.got(), at)  # type: ignore[union-attr]
            return scenario.count(rnd, self.receivers.got(), at)

        def done() -> bool:
            self.supervise()
            return (scenario.count(rnd, self.receivers.got()).lost == 0 and counted().lost == 0
                    and self.deliveries_settled(rnd))

        try:
            wait_for(done, settle_s, f"every notification of round {fault!r}", interval_s=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {counted()}\n{self.logs()}") from None
        return strike, counted()

    def record(self, row: scenario.Row) -> None:
        """Keep a row whose figures the test has asserted; the session writes them out."""
        self.rows[row.fault] = row

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
    rows = [row for c in _CHAOS for row in c.rows.values()]   # every chaos session's (test_scaleout.py has one)
    if not rows:
        return
    from tests.chaos import report

    path = report.save(rows)
    terminalreporter.section("fault suite: rows asserted (written to %s)" % path.relative_to(report.ROOT))
    for line in report.table(rows):
        terminalreporter.write_line(line)

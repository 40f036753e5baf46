"""A reminder and a resolve, each delivered exactly once through an engine SIGKILL inside the
transaction that produced it and a worker SIGKILL while its request is held open at the receiver.

Real processes on loopback: the engine and the Celery worker as children (killed with SIGKILL),
the dispatcher in this process, a webhook receiver, Kafka, PostgreSQL and Redis. The engine that
is killed is the real one frozen at its hold (``tests.alerts.engine_hold``: inside the open
transaction, its alerts produced); the one that takes over is ``python -m alerts engine``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.dispatch import Dispatcher, celery_enqueue
from events import contract, models
from events.contract_ids import alert_id
from events.db import make_engine
from events.kafka import EventProducer, ShutdownFlag
from events.outbox import relay_once, save_rule
from events.settings import Settings
from tests.alerts.conftest import Receiver
from tests.support import wait_for
from tests.alerts.helpers import tick
from tests.alerts.procs import ROOT, Proc, process_env
from tests.alerts.test_messages import SECRET
from tests.alerts.test_pipeline import in_thread, queue, stack_settings, start_worker  # noqa: F401 (fixtures)

STEP = 10_000  # one tick every 10 s of event time; the rule reminds every 60 s


class Hold:
    """Holds the first request to arrive after ``arm()`` open (unanswered) until ``release()``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.armed = False
        self.held = threading.Event()
        self.released = threading.Event()

    def arm(self) -> None:
        with self.lock:
            self.armed, self.held, self.released = True, threading.Event(), threading.Event()

    def __call__(self) -> None:
        with self.lock:
            if not self.armed:
                return
            self.armed = False
            held, released = self.held, self.released
        held.set()
        released.wait(60)

    def release(self) -> None:
        self.released.set()


class Look:
    """The alerts topic as read_uncommitted and read_committed consumers see it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic("alerts")
        base = {**settings.kafka_common(), "enable.auto.commit": False}
        self.c = {level: Consumer({**base, "group.id": f"look-{uuid.uuid4().hex[:8]}", "isolation.level": level})
                  for level in ("read_uncommitted", "read_committed")}

    def ends(self, level: str) -> list[int]:
        return [self.c[level].get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)[1]
                for p in range(self.settings.kafka_partitions)]

    def open(self) -> int:
        """Alerts written past the last stable offset: produced inside a transaction not yet committed."""
        return sum(u - c for u, c in zip(self.ends("read_uncommitted"), self.ends("read_committed")))

    def ids(self, level: str) -> list[str]:
        """The ids of every alert on the topic as ``level`` reads it (up to the current end)."""
        c = self.c[level]
        ends = self.ends("read_uncommitted")
        c.assign([TopicPartition(self.topic, p, 0) for p in range(len(ends))])
        out: list[str] = []
        deadline = time.monotonic() + 30
        quiet = 0
        while time.monotonic() < deadline and quiet < 5:  # 1 s without a message, once there were some
            msgs = [m for m in c.consume(500, 0.2) if m.error() is None and m.value()]
            out += [contract.decode(m.value(), contract.Alert).id for m in msgs]
            quiet = 0 if msgs or not out else quiet + 1
        c.unassign()
        return out

    def close(self) -> None:
        for c in self.c.values():
            c.close()


def start_engine(settings: Settings, tx: str, log: Path) -> Proc:
    return Proc(["engine", "--stale-after-s", "0", "--transactional-id", tx, "--group", f"e-{tx}"],
                process_env(settings), log)


def start_holding_engine(settings: Settings, tx: str, log: Path, hold_file: Path,
                         kind: str) -> subprocess.Popen[bytes]:
    """The engine (``tests.alerts.engine_hold``) that freezes inside the transaction of its first
    reminder or resolve, in its own process group."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.alerts.engine_hold", tx, str(hold_file), kind],
                                env=process_env(settings), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def kill_inside_transaction(engine: subprocess.Popen[bytes], look: Look, hold_file: Path, produce: object) -> int:
    """Hand the holding engine its input (``produce()``); once it is frozen inside the transaction
    holding the alert and the broker shows those alerts produced, uncommitted, SIGKILL it there.
    Return how many uncommitted alerts it held."""
    assert callable(produce)
    produce()
    wait_for(hold_file.exists, timeout_s=90, what="the engine at its hold")
    wait_for(lambda: look.open() > 0, timeout_s=30, what="the held alerts at the broker, uncommitted")
    held = look.open()
    os.killpg(engine.pid, signal.SIGKILL)
    engine.wait(10)
    return held


def rows(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as s:
        return dict(s.execute(select(models.Delivery.alert_id, models.Delivery.status)).tuples().all())


def test_reminder_and_resolve_exactly_once_through_engine_and_worker_kills(
        stack_settings: Settings, receiver: Receiver, tmp_path: Path, queue: str) -> None:  # noqa: F811
    settings = stack_settings
    sessions = sessionmaker(make_engine(settings.database_url), expire_on_commit=False)
    with sessions() as s:
        user = models.User(email="owner@example.com", password_hash="x")
        s.add(user)
        s.flush()
        hook = models.Channel(user_id=user.id, kind="webhook", name="hook", target=receiver.url(), secret=SECRET)
        s.add(hook)
        s.flush()
        r = models.Rule(user_id=user.id, symbol="AAPL", condition={"series": "price", "op": "greater_than", "value": 150},
                        frequency="every_time", channels=[hook], version=1, notify_on_resolve=True,
                        repeat_interval_s=60)
        save_rule(s, r, settings)
        s.commit()
        rule_id, channel_id = r.id, hook.id
    assert relay_once(sessions, EventProducer(settings)) == 1
    first, repeat1, repeat2, resolved = (alert_id(rule_id, 1, f"sim:AAPL:{i}", state) for i, state in
                                         ((0, "firing"), (6, "repeat1"), (12, "repeat2"), (13, "resolved")))
    hold = Hold()
    receiver.on_request = hold
    producer = EventProducer(settings)

    def ticks(*indexes: int, price: float = 151.0) -> None:
        for i in indexes:
            producer.produce(tick(price, i, ts_ms=1_795_000_000_000 + i * STEP))
        producer.flush()

    tx = f"tx-{queue}"
    logs = tmp_path / "engine.log", tmp_path / "worker.log"
    holding = start_holding_engine(settings, tx, logs[0], tmp_path / "hold1", "repeat")
    engine: Proc | None = None
    worker = start_worker(settings, queue, logs[1], concurrency=2, lease_s="2")
    flag = ShutdownFlag()
    dispatcher = Dispatcher(settings, sessions, celery_enqueue(settings, queue), shutdown=flag, group_id=f"d-{queue}")
    thread = in_thread(dispatcher.run, flag)
    look = Look(settings)
    killed_in_txn: dict[str, int] = {}
    statuses_at_worker_kill: dict[str, str] = {}
    try:
        ticks(*range(6))  # fires at 0 s
        wait_for(lambda: rows(sessions) == {first: "delivered"}, timeout_s=90,
                 what=f"the first notice ({logs[0].read_text()[-3000:]} {worker.output()})")

        # the reminder at 60 s: the engine killed with it produced, not committed
        killed_in_txn["repeat1"] = kill_inside_transaction(holding, look, tmp_path / "hold1", lambda: ticks(6))
        holding = start_holding_engine(settings, tx, logs[0], tmp_path / "hold2", "resolved")  # the next hold: the resolve
        wait_for(lambda: rows(sessions).get(repeat1) == "delivered", timeout_s=90, what=f"reminder 1 ({logs[0].read_text()[-3000:]})")

        # the reminder at 120 s: the worker killed while the receiver holds its request open
        hold.arm()
        ticks(*range(7, 13))
        assert hold.held.wait(90), f"reminder 2 never reached the receiver ({worker.output()})"
        worker.kill()
        statuses_at_worker_kill.update(rows(sessions))
        hold.release()
        worker = start_worker(settings, queue, logs[1], concurrency=2, lease_s="2")
        wait_for(lambda: rows(sessions).get(repeat2) == "delivered", timeout_s=90, what=f"reminder 2 ({worker.output()})")

        # the resolve at 130 s: both kills, one after the other
        hold.arm()
        killed_in_txn["resolved"] = kill_inside_transaction(holding, look, tmp_path / "hold2",
                                                            lambda: ticks(13, price=149.0))
        engine = start_engine(settings, tx, logs[0])
        assert hold.held.wait(90), f"the resolve never reached the receiver ({engine.output()} {worker.output()})"
        worker.kill()
        statuses_at_worker_kill[resolved] = rows(sessions).get(resolved, "")
        hold.release()
        worker = start_worker(settings, queue, logs[1], concurrency=2, lease_s="2")
        wait_for(lambda: rows(sessions).get(resolved) == "delivered", timeout_s=90, what=f"the resolve ({worker.output()})")
        committed, uncommitted = look.ids("read_committed"), look.ids("read_uncommitted")
    finally:
        flag.set()
        thread.join(20)
        worker.stop()
        if holding.poll() is None:
            os.killpg(holding.pid, signal.SIGKILL)
            holding.wait(10)
        if engine is not None:
            engine.stop()
        look.close()

    got = [x.headers["webhook-id"] for x in receiver.got()]
    print(f"engine killed holding {killed_in_txn} uncommitted alerts; deliveries at the worker kills: "
          f"{statuses_at_worker_kill}; requests at the receiver: {len(got)} for {len(set(got))} ids")
    # the kills landed while the work was in flight
    assert killed_in_txn["repeat1"] >= 1 and killed_in_txn["resolved"] >= 1, killed_in_txn
    assert statuses_at_worker_kill[repeat2] == "sending" and statuses_at_worker_kill[resolved] == "sending"
    # the killed transactions were aborted: their copies are in the log, never read as committed
    assert sorted(committed) == sorted([first, repeat1, repeat2, resolved])
    assert uncommitted.count(repeat1) == 2 and uncommitted.count(resolved) == 2
    # one delivery row per occurrence, each delivered
    assert rows(sessions) == {a: "delivered" for a in (first, repeat1, repeat2, resolved)}
    # at the receiver: every occurrence, under its one id; only the held requests went out again
    want = {f"{a}.c{channel_id}" for a in (first, repeat1, repeat2, resolved)}
    assert set(got) == want
    assert got.count(f"{first}.c{channel_id}") == 1 and got.count(f"{repeat1}.c{channel_id}") == 1
    assert got.count(f"{repeat2}.c{channel_id}") >= 2 and got.count(f"{resolved}.c{channel_id}") >= 2

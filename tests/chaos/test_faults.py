"""Nothing lost, nothing sent twice, under faults.

While the known sequence of ticks flows (``scenario.py``), each fault in turn strikes the running
stack; afterwards the notifications are counted at the SMTP server and the webhook receiver by
their ids. Every round must deliver each expected alert on both channels under its own id, with
no (alert, channel) pair notified under two ids or with two contents. Copies under the SAME id
(a worker killed mid-send) are allowed and reported: receivers deduplicate by that id.

The faults act only on what the session started: its own broker and Redis, a proxy in front of
PostgreSQL (cut = every connection closed, new ones refused), its own receivers and processes.
"""

from __future__ import annotations

from tests.chaos.conftest import Chaos, hold
from tests.e2e.stack import wait_for


def check(chaos: Chaos, fault: str, inject) -> None:  # type: ignore[no-untyped-def]
    row = chaos.run_round(fault, inject)
    assert row.expected == 12
    assert row.delivered == row.expected, row
    assert row.duplicated == 0, row


def test_baseline_without_fault(chaos: Chaos) -> None:
    check(chaos, "none (baseline)", lambda: None)


def test_sigkill_alert_engine(chaos: Chaos) -> None:
    check(chaos, "SIGKILL alert engine", lambda: chaos.kill_and_restart("alerts"))


def test_sigkill_dispatcher(chaos: Chaos) -> None:
    check(chaos, "SIGKILL dispatcher", lambda: chaos.kill_and_restart("dispatch"))


def test_sigkill_celery_worker(chaos: Chaos) -> None:
    def inject() -> None:
        # land the kill while the round's notifications are going out
        wait_for(lambda: chaos.rounds["SIGKILL Celery worker"].receipts(chaos.receivers.got()), 30,
                 "the round's first notification")
        chaos.kill_and_restart("worker")

    check(chaos, "SIGKILL Celery worker", inject)


def test_sigkill_spark_job(chaos: Chaos) -> None:
    check(chaos, "SIGKILL Spark job", lambda: chaos.kill_and_restart("stream"))


def test_sigkill_bridge(chaos: Chaos) -> None:
    def inject() -> None:
        chaos.kill_and_restart("bridge")
        assert chaos.stack is not None
        wait_for(lambda: "process_cpu_seconds_total" in chaos.stack.metrics("bridge"), 60,  # type: ignore[union-attr]
                 "the restarted bridge to answer")

    check(chaos, "SIGKILL bridge", inject)
    # the restarted bridge went on from its committed offsets through the end of the round's ticks
    last_tick_ms = chaos.rounds["SIGKILL bridge"].ticks()[-1].ts
    wait_for(lambda: chaos.bridge_heartbeat().get("last_event_ms", 0) >= last_tick_ms, 30,
             "the restarted bridge to consume the round's last tick")


def test_kafka_broker_down_20s(chaos: Chaos) -> None:
    def inject() -> None:
        chaos.kafka.stop()
        hold(20)
        chaos.kafka.start()

    check(chaos, "Kafka broker down 20 s", inject)
    # every process rode the outage out in place (the engine starts over from its last commit
    # in-process): under honcho one exited process would stop them all
    assert chaos.rows["Kafka broker down 20 s"].restarts == "", chaos.rows["Kafka broker down 20 s"]


def test_redis_restarted(chaos: Chaos) -> None:
    def inject() -> None:
        chaos.redis.stop()  # no persistence: every queued task is lost with it
        hold(3)
        chaos.redis.start()

    check(chaos, "Redis restarted", inject)


def test_receivers_down_25s(chaos: Chaos) -> None:
    def inject() -> None:
        chaos.receivers.stop()
        hold(25)
        chaos.receivers.start()

    check(chaos, "SMTP+webhook down 25 s", inject)


def test_database_unreachable_20s(chaos: Chaos) -> None:
    def inject() -> None:
        chaos.proxy.cut()
        hold(20)
        chaos.proxy.restore()

    check(chaos, "database unreachable 20 s", inject)
    # a send that went out while the database was away was recorded once it came back, not re-sent
    assert chaos.rows["database unreachable 20 s"].redelivered == 0, chaos.rows["database unreachable 20 s"]


def test_no_late_copies_under_other_ids(chaos: Chaos) -> None:
    """Recount every round from all that arrived by the end: a late copy under another id fails."""
    rows = chaos.recount()
    assert len(rows) == 10
    for row in rows:
        assert row.delivered == row.expected and row.duplicated == 0, row

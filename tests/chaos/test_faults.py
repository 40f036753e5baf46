"""Nothing lost, nothing sent twice, under faults struck at the worst moment.

While a round's known sequence of ticks flows (``scenario.py``), its fault strikes the running
stack once the round's first notifications have arrived, catching its target inside its critical
section (``strikes.py``: an open Kafka transaction holding alerts, tasks enqueued for uncommitted
offsets, a request the receiver holds open, an uncommitted Spark micro-batch). Afterwards the
notifications are counted by their ids at the SMTP server and the webhook receiver (for the
bridge: the ``alert`` events at a Socket.IO client). Every row asserts:

- owed = received, lost = 0: each owed notification arrived under the id it must carry;
- duplicated = 0: no (alert, channel) pair under two ids or with two contents, nothing unowed;
- the split: some of the round's notifications arrived before the strike, some after;
- the busy proof the strike observed (and, where the fault leaves a trace, that trace).

Copies under the SAME id (a sender killed mid-send sends again) are allowed and reported.
The faults act only on what the session started: its own broker, Redis, receivers, processes
and a proxy in front of PostgreSQL (cut = every connection closed, new ones refused).
"""

from __future__ import annotations

from typing import Any

from tests.chaos import scenario, strikes
from tests.chaos.conftest import SETTLE_S, Chaos, Strike

OWED = 2 * scenario.CYCLES * len(scenario.KINDS)   # two rules, one notification per channel


def check(chaos: Chaos, fault: str, strike: Strike | None, t: scenario.Tally, counted_at: str = "receivers",
          owed: int = OWED) -> scenario.Row:
    assert t.owed == owed, t
    assert t.received == t.owed and t.lost == 0, t
    assert t.duplicated == 0, t
    if strike is not None:
        assert t.before > 0 and t.after > 0, f"the fault did not split the round: {t}"
    row = scenario.Row.of(fault, strike.target if strike else "-", strike.moment if strike else "-",
                          strike.busy if strike else "-", counted_at, t, ",".join(sorted(set(chaos.restarted))))
    chaos.record(row)
    return row


def test_baseline_without_fault(chaos: Chaos) -> None:
    fault = "none (baseline)"
    strike, t = chaos.run_round(fault, lambda: None)
    check(chaos, fault, strike, t)
    assert t.copies == 0, t


def test_sigkill_alert_engine_inside_its_transaction(chaos: Chaos) -> None:
    fault, facts = "SIGKILL alert engine", dict[str, Any]()
    strike, t = chaos.run_round(fault, lambda: strikes.engine(chaos, fault, facts))
    assert strike is not None and facts["open"] > 0
    aborted = strikes.engine_aborted(facts)
    # the killed transaction was aborted: read_committed never sees what it held
    assert aborted >= facts["open"], (aborted, facts["open"])
    strike.busy += f"; {aborted} aborted after the restart (read_uncommitted minus read_committed)"
    check(chaos, fault, strike, t)


def test_sigkill_dispatcher_between_enqueue_and_commit(chaos: Chaos) -> None:
    fault = "SIGKILL dispatcher"
    strike, t = chaos.run_round(fault, lambda: strikes.dispatcher(chaos, fault))
    check(chaos, fault, strike, t)


def test_sigkill_celery_worker_mid_send(chaos: Chaos) -> None:
    fault, facts = "SIGKILL Celery worker", dict[str, Any]()
    strike, t = chaos.run_round(fault, lambda: strikes.worker(chaos, fault, facts))
    # the held request was received but never answered: it went out again under the same id
    again = [r for r in chaos.receivers.got() if r.msg_id == facts["held_id"]]
    assert len(again) >= 2 and t.copies >= 1, (len(again), t)
    check(chaos, fault, strike, t)


def test_sigkill_spark_job_mid_batch(chaos: Chaos) -> None:
    fault = "SIGKILL Spark job"
    # a restarted Spark job's first micro-batch takes minutes on a loaded machine
    strike, t = chaos.run_round(fault, lambda: strikes.spark(chaos, fault), settle_s=2 * SETTLE_S)
    check(chaos, fault, strike, t)


def test_sigkill_bridge_counted_at_a_socketio_client(chaos: Chaos) -> None:
    fault = "SIGKILL bridge"
    strike, t = chaos.run_round(fault, lambda: strikes.bridge(chaos, fault), live=True)
    # what the bridge delivers: one live alert event per alert, by id (it may repeat, must not lose)
    check(chaos, fault, strike, t, counted_at="Socket.IO client", owed=2 * scenario.CYCLES)
    rnd = chaos.rounds[fault]
    at_receivers = scenario.count(rnd, chaos.receivers.got())
    assert at_receivers.lost == 0 and at_receivers.duplicated == 0, at_receivers


def test_kafka_broker_down(chaos: Chaos) -> None:
    fault = "Kafka broker down 10 s"
    strike, t = chaos.run_round(fault, lambda: strikes.outage(chaos, fault, "Kafka broker", chaos.kafka.stop,
                                                              chaos.kafka.start, 10))
    # every process rode the outage out in place (the engine starts over from its last commit
    # in-process): under honcho one exited process would stop them all
    assert chaos.restarted == [], chaos.restarted
    check(chaos, fault, strike, t)


def test_redis_restarted(chaos: Chaos) -> None:
    fault = "Redis restarted"
    # no persistence: every queued task is lost with it
    strike, t = chaos.run_round(fault, lambda: strikes.outage(chaos, fault, "Redis", chaos.redis.stop,
                                                              chaos.redis.start, 3))
    check(chaos, fault, strike, t)


def test_receivers_down(chaos: Chaos) -> None:
    fault = "SMTP+webhook down 10 s"
    strike, t = chaos.run_round(fault, lambda: strikes.outage(chaos, fault, "SMTP server + webhook receiver",
                                                              chaos.receivers.stop, chaos.receivers.start, 10))
    check(chaos, fault, strike, t)


def test_database_unreachable(chaos: Chaos) -> None:
    fault = "database unreachable 8 s"
    strike, t = chaos.run_round(fault, lambda: strikes.outage(chaos, fault, "PostgreSQL (proxy cut)",
                                                              chaos.proxy.cut, chaos.proxy.restore, 8))
    # a send that went out while the database was away was recorded once it came back, not re-sent
    assert t.copies == 0, t
    check(chaos, fault, strike, t)

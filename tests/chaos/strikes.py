"""Each fault, struck while its round is under way, with the proof of what the target held then.

A strike first waits for the round's first notifications (the round is under way: the row's
split counts notifications before and after it), then catches the target inside its critical
section, observed from outside (``probe.py``), and kills it there, or takes a service away.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import select

from events import models
from tests.chaos import scenario
from tests.chaos.conftest import Chaos, Strike, hold
from tests.chaos.infra import CONTENT_KEY
from tests.chaos.probe import KafkaLook, catch, pushed_deliveries, queued_deliveries, spark_in_flight
from tests.e2e.stack import Stack
from tests.support import wait_for

UNDER_WAY = 4   # notifications of the round that must have arrived before a strike


def _stack(chaos: Chaos) -> Stack:
    assert chaos.stack is not None and chaos.settings is not None
    return chaos.stack


def aborted_alerts(look: KafkaLook, topic: str) -> tuple[int, int]:
    """(read_uncommitted, read_committed) message counts of the whole topic: the difference is
    what aborted transactions wrote (markers are never delivered to either)."""
    return len(look.read(topic, committed=False)), len(look.read(topic, committed=True))


def in_transaction(look: KafkaLook, topic: str) -> Callable[[], dict[int, int] | None]:
    """The look that proves an engine (frozen) inside an open transaction: partition -> alerts
    written past the last stable offset, still there after a pause."""

    def look_once() -> dict[int, int] | None:
        pending = look.open_transaction(topic)
        if not pending:
            return None
        hold(0.3)  # a commit already on its way to the broker would have completed by now
        return pending if look.open_transaction(topic) == pending else None

    return look_once


def engine(chaos: Chaos, fault: str, facts: dict[str, Any]) -> Strike:
    """Freeze the engine inside a transaction that holds produced, uncommitted alerts; SIGKILL it."""
    stack = _stack(chaos)
    topic = chaos.settings.topic("alerts")  # type: ignore[union-attr]
    look = KafkaLook(chaos.kafka.bootstrap)
    facts["look"], facts["topic"] = look, topic
    facts["before"] = aborted_alerts(look, topic)
    chaos.wait_receipts(fault, UNDER_WAY)

    pending, steps = catch(stack, "alerts", in_transaction(look, topic))
    facts["open"] = sum(pending.values())
    strike = Strike("alert engine", "inside a transaction: alerts produced, not committed",
                    f"{facts['open']} alerts past the last stable offset (caught in {steps} steps)")
    chaos.kill_and_restart("alerts")
    return strike


def engine_aborted(facts: dict[str, Any]) -> int:
    """After the round: how many alerts the killed transaction's abort left unread by read_committed."""
    look: KafkaLook = facts["look"]
    (ru0, rc0), (ru1, rc1) = facts["before"], aborted_alerts(look, facts["topic"])
    look.close()
    return int((ru1 - rc1) - (ru0 - rc0))


def dispatcher(chaos: Chaos, fault: str) -> Strike:
    """Hold the dispatcher's connection to Redis right after the first task of a batch went in (the
    worker frozen, so queued tasks stay visible): it is blocked mid-enqueue, its offsets not
    committed. Check that from outside, then SIGKILL it there."""
    stack = _stack(chaos)
    settings = chaos.settings
    assert settings is not None and chaos.sessions is not None
    topic, queue, group = settings.topic("alerts"), stack.env["ALERTS_QUEUE"], "alerts-dispatch"
    look = KafkaLook(chaos.kafka.bootstrap)
    chaos.wait_receipts(fault, UNDER_WAY)
    stack.signal("worker", signal.SIGSTOP)
    chaos.redis_hold.arm()
    frozen = False
    try:
        assert chaos.redis_hold.tripped.wait(60), "the dispatcher enqueued nothing"
        stack.signal("dispatch", signal.SIGSTOP)
        frozen = True
        # in the list still, or let through by the proxy (a worker idle in BRPOP took it at once)
        queued = set(queued_deliveries(chaos.redis.url, queue)) | set(pushed_deliveries(chaos.redis_hold.passed))
        committed = look.group_committed(group, topic)
        alert_ids = {json.loads(v)["id"] for v in look.read(topic, committed=True, start=committed)}
        with chaos.sessions() as s:
            ids = set(s.scalars(select(models.Delivery.id).where(models.Delivery.alert_id.in_(alert_ids))))
        hit = ids & queued
        assert hit, f"no task enqueued for the {len(alert_ids)} alerts past the dispatcher's committed offsets"
        strike = Strike("dispatcher", "mid-enqueue (its Redis connection held), offsets not committed",
                        f"{len(hit)} tasks enqueued for {len(alert_ids)} alerts past the group's committed offsets, "
                        f"{len(ids - queued)} of their deliveries not yet enqueued")
        stack.kill("dispatch")
        frozen = False
    finally:
        if frozen:  # the strike failed before its kill: never leave the dispatcher stopped for the next rows
            stack.signal("dispatch", signal.SIGCONT)
        chaos.redis_hold.release()
        stack.signal("worker", signal.SIGCONT)
        look.close()
    hold(2)
    chaos.restart("dispatch")
    return strike


def worker(chaos: Chaos, fault: str, facts: dict[str, Any]) -> Strike:
    """The webhook receiver holds one of the round's requests open; SIGKILL the worker sending it."""
    stack = _stack(chaos)
    rnd = chaos.rounds[fault]
    mine = {rnd.price_rule, rnd.close_rule}
    chaos.wait_receipts(fault, UNDER_WAY)

    def of_round(content: str) -> bool:
        m = CONTENT_KEY.search(content)
        return bool(m) and int(m.group(1)) in mine  # type: ignore[union-attr]

    trap = chaos.receivers.arm(of_round)
    assert trap.held.wait(60), "no webhook of the round reached the receiver"
    open_now = chaos.receivers.open_requests
    strike = Strike("Celery worker", "mid-send: the receiver holds its request open",
                    f"{open_now} request open at the receiver; the sender's connection closed under it")
    stack.kill("worker")
    trap.release.set()
    assert trap.done.wait(15), "the held request did not finish"
    assert open_now == 1 and trap.peer_closed, (open_now, trap.peer_closed)
    facts["held_id"] = trap.msg_id
    hold(2)
    chaos.restart("worker")
    return strike


def spark(chaos: Chaos, fault: str) -> Strike:
    """Freeze the Spark job while a micro-batch holding ticks is planned and not committed; SIGKILL it."""
    stack = _stack(chaos)
    checkpoint = Path(stack.env["TICKERBELL_VAR"]) / "spark" / "stream"
    ticks = chaos.settings.topic("ticks")  # type: ignore[union-attr]
    chaos.wait_receipts(fault, UNDER_WAY)
    batch, steps = catch(stack, "stream", lambda: spark_in_flight(checkpoint, ticks), step_s=0.02)
    strike = Strike("Spark job", "mid-batch: offsets written, commit not",
                    f"micro-batch {batch.batch} over {batch.ticks} ticks planned, not committed "
                    f"(caught in {steps} steps)")
    chaos.kill_and_restart("stream")
    return strike


def bridge(chaos: Chaos, fault: str) -> Strike:
    """Freeze the bridge while it owes the Socket.IO rooms alerts past its committed offsets; SIGKILL it."""
    stack = _stack(chaos)
    topic, group = chaos.settings.topic("alerts"), chaos.settings.topic("tickerbell-bridge")  # type: ignore[union-attr]
    rnd = chaos.rounds[fault]
    look = KafkaLook(chaos.kafka.bootstrap)
    wait_for(lambda: scenario.count_live(rnd, chaos.live.got()).received >= 2, 60,  # type: ignore[union-attr]
             "the round's first live alerts")

    def owes() -> int | None:
        committed = look.group_committed(group, topic)
        end = look.ends(topic, committed=True)
        return sum(max(0, end[p] - c) for p, c in committed.items()) or None

    try:
        owed, steps = catch(stack, "bridge", owes)
    finally:
        look.close()
    strike = Strike("bridge", "with alerts consumed or due, offsets not committed",
                    f"{owed} alerts past the group's committed offsets (caught in {steps} steps)")
    chaos.kill_and_restart("bridge")
    return strike


def outage(chaos: Chaos, fault: str, target: str, down: Any, up: Any, seconds: float) -> Strike:
    """Take a service away for ``seconds`` while the round owes notifications not yet received."""
    rnd = chaos.rounds[fault]
    chaos.wait_receipts(fault, UNDER_WAY)
    pending = scenario.count(rnd, chaos.receivers.got()).lost
    strike = Strike(target, f"down {seconds:g} s mid-round", f"{pending} notifications owed, not yet received")
    down()
    hold(seconds)
    up()
    assert pending > 0
    return strike

"""Soak: the whole stack under a steady load while a nemesis strikes on a schedule (Jepsen's shape:
a workload, a nemesis, then a checker over the whole history).

The workload: ``rate`` ticks/s over ``symbols`` symbols (``SK000``...), one ``price crossing_up
150`` rule each notifying email and webhook. Per symbol the price is 149 except every
``period``-th tick, which is 151 + cycle/100: each of those crosses up once, with a value unique
to its rule, so the owed notifications (and the ids they must carry) follow from the ticks sent.

The nemesis: a SIGKILL of a random process every ``kill_every_s`` (uniform, +-50 %), restarted at
once (as a platform restarts a crashed dyno), plus a broker stop, a Redis restart and a database
cut at fixed fractions of the run. The checker: every owed notification received under its id,
none under another id, copies under the same id counted.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from alerts.messages import webhook_id
from events import contract
from events.contract_ids import alert_id, tick_id
from events.kafka import EventProducer
from tests.chaos import scenario
from tests.chaos.conftest import Chaos, hold
from tests.chaos.infra import CONTENT_KEY
from tests.support import wait_for

VICTIMS = ["alerts", "dispatch", "worker", "bridge", "relay", "stream"]
SOURCE = "soak"


@dataclass
class Plan:
    seconds: float
    rate: int = 1000          # ticks per second, all symbols together
    symbols: int = 100
    period: int = 100         # ticks of a symbol between two crossings (10 s at 10 ticks/s)
    kill_every_s: float = 4.0
    seed: int = 15


@dataclass
class Workload:
    """Produces the ticks at the planned rate and keeps what they owe."""

    chaos: Chaos
    plan: Plan
    owed: dict[scenario.Key, str] = field(default_factory=dict)
    sent: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def owe(self, rule: int, tick: contract.Tick) -> None:
        alert = alert_id(rule, 1, tick.id, "firing")
        key = (rule, round(tick.price, 2))
        self.owed[(key, "webhook")] = webhook_id(alert, self.chaos.hook_channel)
        self.owed[(key, "email")] = scenario.email_id(alert, self.chaos.mail_channel)

    def run(self, stop_at: float) -> None:
        try:
            producer = EventProducer(self.chaos.settings)  # type: ignore[arg-type]
            symbols = sorted(self.chaos.soak_rules)[: self.plan.symbols]
            per_step = max(1, self.plan.rate // 10)   # ticks every 0.1 s
            base_ms = int(time.time() * 1000)
            seq = 0
            started = time.monotonic()
            while time.monotonic() - started < stop_at:
                for _ in range(per_step):
                    symbol = symbols[seq % len(symbols)]
                    n = seq // len(symbols)   # this symbol's tick count
                    crossing = n % self.plan.period == self.plan.period // 2
                    price = round(151 + (n // self.plan.period + 1) / 100, 2) if crossing else 149.0
                    tick = contract.Tick(id=tick_id(SOURCE, symbol, n), ts=base_ms + n * 1000 * len(symbols)
                                         // self.plan.rate, symbol=symbol, price=price, size=1.0, source=SOURCE, seq=n)
                    producer.produce(tick)
                    if crossing:
                        self.owe(self.chaos.soak_rules[symbol], tick)
                    seq += 1
                producer.raw.poll(0)
                self.sent = seq
                # pacing: the next step's ticks are due 0.1 s after this one's (a rate, not a sync)
                ahead = started + seq / self.plan.rate - time.monotonic()
                if ahead > 0:
                    hold(ahead)
            producer.flush(150)  # through a broker outage
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.errors.append(exc)


@dataclass
class Nemesis:
    """Strikes on its schedule until told to stop; restarts whatever exited in between."""

    chaos: Chaos
    plan: Plan
    kills: list[dict[str, Any]] = field(default_factory=list)
    outages: list[dict[str, Any]] = field(default_factory=list)

    def schedule(self) -> list[tuple[float, str]]:
        rng = random.Random(self.plan.seed)
        out: list[tuple[float, str]] = [(self.plan.seconds * 0.25, "broker"), (self.plan.seconds * 0.5, "redis"),
                                        (self.plan.seconds * 0.7, "database")]
        t = rng.uniform(0.5, 1.5) * self.plan.kill_every_s
        while t < self.plan.seconds - 2:
            out.append((t, rng.choice(VICTIMS)))
            t += rng.uniform(0.5, 1.5) * self.plan.kill_every_s
        return sorted(out)

    def run(self, started: float, stop: threading.Event) -> None:
        c = self.chaos
        assert c.stack is not None
        outage: dict[str, tuple[Callable[[], None], Callable[[], None], float]] = {
            "broker": (c.kafka.stop, c.kafka.start, 8), "redis": (c.redis.stop, c.redis.start, 3),
            "database": (c.proxy.cut, c.proxy.restore, 8)}
        for at, what in self.schedule():
            while not stop.is_set() and time.monotonic() - started < at:
                c.supervise()
                stop.wait(0.2)
            if stop.is_set():
                return
            t = time.monotonic() - started
            if what in outage:
                down, up, seconds = outage[what]
                down()
                stop.wait(seconds)
                up()
                self.outages.append({"what": f"{what} {seconds:g} s", "t": round(t, 1)})
            else:
                c.stack.kill(what)
                c.restart(what)
                self.kills.append({"process": what, "t": round(t, 1)})


def run(chaos: Chaos, plan: Plan, settle_s: float = 400) -> tuple[scenario.Tally, dict[str, Any]]:
    """Run the workload and the nemesis for ``plan.seconds``, then wait for every owed notification."""
    work, nemesis = Workload(chaos, plan), Nemesis(chaos, plan)
    started = time.monotonic()
    stop = threading.Event()
    producer = threading.Thread(target=work.run, args=(plan.seconds,), daemon=True)
    striker = threading.Thread(target=nemesis.run, args=(started, stop), daemon=True)
    producer.start()
    striker.start()
    producer.join(plan.seconds + 300)
    striker.join(plan.seconds + 300)   # the schedule's last outage may end after the last tick
    stop.set()
    assert not producer.is_alive() and not work.errors, f"producing the soak's ticks failed: {work.errors}"
    chaos.history_owed.update(work.owed)   # owed from the moment the ticks are sent, for the checker
    rules = set(chaos.soak_rules.values())

    def counted() -> scenario.Tally:
        got = [((key, r.kind), r.msg_id, r.content, r.at) for key, r in _receipts(chaos, rules)]
        return scenario.tally(work.owed, got)

    def done() -> bool:
        chaos.supervise()
        return counted().lost == 0

    try:
        wait_for(done, settle_s, "every notification of the soak", interval_s=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {counted()}\n{chaos.logs()}") from None
    t = counted()
    result = {"seconds": plan.seconds, "rate": plan.rate, "symbols": plan.symbols, "ticks": work.sent,
              "owed": t.owed, "received": t.received, "lost": t.lost, "duplicated": t.duplicated,
              "copies": t.copies, "kills": nemesis.kills, "outages": nemesis.outages,
              "settled_s": round(time.monotonic() - started - plan.seconds, 1)}
    return t, result


def _receipts(chaos: Chaos, rules: set[int]) -> list[tuple[tuple[int, float], Any]]:
    out = []
    for r in chaos.receivers.got():
        m = CONTENT_KEY.search(r.content)
        if m and int(m.group(1)) in rules:
            out.append(((int(m.group(1)), round(float(m.group(2)), 2)), r))
    return out

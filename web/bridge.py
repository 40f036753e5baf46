"""The ``bridge`` process: Kafka topics -> Socket.IO rooms through the Redis message queue.

Ticks, bars and forecasts go to the symbol's room, coalesced so a browser
gets at most one ``update`` per symbol every ``interval_s`` (0.1 s: about 10
per second) whatever the tick rate: an update carries the latest price, every
bar closed since the last one (bounded) and the latest forecast. Backfilled
bars (``Bar.history``) are not pushed one by one (a backfill is hundreds of
bars at once, and the chart loads history from the API): an update says only
``history_ms``, the end of the newest history bar since the last update, so an
open page knows to reload its bars. Alerts go at
once to their owner's room as ``alert``. The bridge is a live view: a new
consumer group starts at the end of the topics (``offset_reset``), and the pipeline commits that
start at once, so a bridge restarted later resumes where it stopped, on every partition. It is a
consumer pipeline (``events.pipeline``): the step (:func:`emissions`) routes and
coalesces without I/O, the sink emits, and offsets are committed after the
batch's emissions are handed to Redis.

Market data goes only to symbol rooms someone watches: the web processes keep
the viewed set in Redis (:mod:`web.rooms`), the bridge reads it at most once a
second (:class:`ViewedSymbols`) and passes it to the step. A symbol nobody
watches is still coalesced, so the moment its room is joined its latest state
goes out at once. Alerts (user rooms) and system alerts are never filtered.
While the viewed set cannot be read, every symbol's updates go out (as before
the filter) rather than none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection

import msgspec
import redis
import socketio

from events import contract
from events.contract import Alert, Bar, Prediction, Tick
from events.kafka import ShutdownFlag
from events.pipeline import Decoded, Pipeline
from events.settings import Settings
from web.rooms import read_viewed, symbol_room, user_room

log = logging.getLogger(__name__)
Emit = Callable[[str, dict[str, Any], str], None]  # (event, payload, room)


def bar_payload(bar: Bar) -> dict[str, Any]:
    out = msgspec.structs.asdict(bar)
    out.pop("id"), out.pop("v")
    return out


def prediction_payload(p: Prediction) -> dict[str, Any]:
    out = msgspec.structs.asdict(p)
    out.pop("v")
    out["ts_ms"] = out.pop("ts")
    out["target_ms"] = p.base_start_ms + (p.horizon_bars + 1) * p.bar_seconds * 1000
    return out


def alert_payload(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "rule_id": a.rule_id, "rule_version": a.rule_version, "rule_name": a.rule_name,
            "symbol": a.symbol, "state": a.state, "ts_ms": a.ts, "series": a.series, "op": a.op,
            "value": a.value, "threshold": a.threshold, "message": a.message, "evidence": a.evidence}


@dataclass
class _Pending:
    """What a symbol's next update carries, kept as events: a payload is built only when it is sent
    (most symbols' state is replaced many times, or never sent, before anyone views it)."""

    price: float | None = None
    price_ts_ms: int = 0
    bars: dict[int, Bar] = field(default_factory=dict)
    prediction: Prediction | None = None
    history_ms: int | None = None   # end of the newest backfilled bar since the last update

    def empty(self) -> bool:
        return self.price is None and not self.bars and self.prediction is None and self.history_ms is None


Viewed = Collection[str] | None  # the symbols whose rooms someone watches; None: every symbol


class Coalescer:
    """Per symbol, at most one update per ``interval_s`` (pure: the caller passes the clock).

    ``viewed`` (of :meth:`due`, :meth:`drain`, :meth:`next_due_in_s`): only those symbols'
    updates are due; the others keep coalescing until their room is viewed (None: all)."""

    def __init__(self, interval_s: float = 0.1, max_bars: int = 100) -> None:
        self.interval_s = interval_s
        self.max_bars = max_bars
        self._pending: dict[str, _Pending] = {}
        self._last_sent: dict[str, float] = {}

    def _slot(self, symbol: str) -> _Pending:
        slot = self._pending.get(symbol)
        if slot is None:
            slot = self._pending[symbol] = _Pending()
        return slot

    def add(self, event: contract.Event) -> None:
        if isinstance(event, Tick):
            slot = self._slot(event.symbol)
            if event.ts >= slot.price_ts_ms:
                slot.price, slot.price_ts_ms = event.price, event.ts
        elif isinstance(event, Bar) and event.history:
            slot = self._slot(event.symbol)
            slot.history_ms = max(slot.history_ms or 0, event.ts)
        elif isinstance(event, Bar):
            slot = self._slot(event.symbol)
            slot.bars[event.start_ms] = event
            if len(slot.bars) > self.max_bars:
                del slot.bars[min(slot.bars)]
        elif isinstance(event, Prediction):
            slot = self._slot(event.symbol)
            if slot.prediction is None or event.base_start_ms >= slot.prediction.base_start_ms:
                slot.prediction = event

    def _payload(self, symbol: str, slot: _Pending) -> dict[str, Any]:
        return {"symbol": symbol, "price": slot.price, "ts_ms": slot.price_ts_ms or None,
                "bars": [bar_payload(slot.bars[k]) for k in sorted(slot.bars)],
                "prediction": prediction_payload(slot.prediction) if slot.prediction is not None else None,
                "history_ms": slot.history_ms}

    def _candidates(self, viewed: Viewed) -> list[str]:
        """The pending symbols that may be sent: the viewed ones (by the smaller of the two sets)."""
        if viewed is None:
            return list(self._pending)
        if len(viewed) < len(self._pending):
            return [s for s in viewed if s in self._pending]
        return [s for s in self._pending if s in viewed]

    def due(self, now_s: float, viewed: Viewed = None) -> list[dict[str, Any]]:
        """Updates of viewed symbols that have not had one in the last ``interval_s``; they are then sent."""
        out = []
        for symbol in self._candidates(viewed):
            slot = self._pending[symbol]
            if slot.empty() or now_s - self._last_sent.get(symbol, -1e18) < self.interval_s:
                continue
            out.append(self._payload(symbol, slot))
            self._last_sent[symbol] = now_s
            del self._pending[symbol]
        return out

    def drain(self, viewed: Viewed = None) -> list[dict[str, Any]]:
        """Every viewed symbol's pending update, whatever the interval (on shutdown); the rest is dropped."""
        out = [self._payload(s, self._pending[s]) for s in self._candidates(viewed) if not self._pending[s].empty()]
        self._pending.clear()
        return out

    def next_due_in_s(self, now_s: float, viewed: Viewed = None) -> float | None:
        waits = [self.interval_s - (now_s - self._last_sent.get(s, -1e18))
                 for s in self._candidates(viewed) if not self._pending[s].empty()]
        return max(0.0, min(waits)) if waits else None


def route(events: list[contract.Event], coalescer: Coalescer, emit: Emit) -> None:
    """Alerts out at once to their owner; market data into the coalescer."""
    for event in events:
        if isinstance(event, Alert):
            if event.user_id:
                emit("alert", alert_payload(event), user_room(event.user_id))
            else:  # a system alert (stale feed) concerns everyone watching the symbol
                emit("system_alert", alert_payload(event), symbol_room(event.symbol))
        else:
            coalescer.add(event)


def redis_emitter(settings: Settings, channel: str) -> tuple[Emit, socketio.RedisManager]:
    manager = socketio.RedisManager(settings.redis_url, channel=channel, write_only=True)

    def emit(event: str, payload: dict[str, Any], room: str) -> None:
        manager.emit(event, payload, room=room, namespace="/")

    return emit, manager


Emission = tuple[str, dict[str, Any], str]  # (event, payload, room), for the sink to emit


def emissions(events: list[contract.Event], coalescer: Coalescer, now_s: float,
              viewed: Viewed = None) -> list[Emission]:
    """The bridge's step (no I/O): alerts at once, market data into the coalescer, and the
    updates of the ``viewed`` symbols (None: all) due at ``now_s``."""
    out: list[Emission] = []
    route(events, coalescer, lambda event, payload, room: out.append((event, payload, room)))
    out += _updates(coalescer.due(now_s, viewed))
    return out


def _updates(payloads: list[dict[str, Any]]) -> list[Emission]:
    return [("update", payload, symbol_room(payload["symbol"])) for payload in payloads]


class ViewedSymbols:
    """The viewed set as the bridge sees it: read from Redis at most once per ``every_s`` (one
    ZRANGEBYSCORE), the last answer kept in between.

    :meth:`get` never raises: while Redis cannot be read it answers None (emit every symbol,
    rather than go dark), logging the outage once and the recovery once."""

    def __init__(self, client: redis.Redis, prefix: str, every_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.every_s = every_s
        self.clock = clock
        self.wall = wall
        self.reads = 0
        self._at = -1e18
        self._symbols: set[str] | None = None
        self._failing = False

    def get(self) -> set[str] | None:
        now = self.clock()
        if now - self._at < self.every_s:
            return self._symbols
        self._at = now
        self.reads += 1
        try:
            self._symbols = read_viewed(self.client, self.prefix, self.wall())
        except redis.RedisError as exc:
            if not self._failing:
                log.warning("bridge: the viewed set cannot be read (%s): updates go to every symbol room "
                            "until it can", exc)
            self._failing = True
            self._symbols = None
        else:
            if self._failing:
                log.info("bridge: the viewed set is readable again: updates go to viewed rooms only")
            self._failing = False
        return self._symbols


def run_bridge(settings: Settings, shutdown: ShutdownFlag, *, channel: str = "tickerbell-socketio",
               group_id: str = "tickerbell-bridge", offset_reset: str = "latest", interval_s: float = 0.1,
               redis_prefix: str = "tickerbell:", idle_stop_s: float | None = None,
               emit: Emit | None = None, viewed_every_s: float = 1.0) -> dict[str, int]:
    """Run until ``shutdown`` is set (or ``idle_stop_s`` without input); return counters.

    ``redis_prefix`` names the heartbeat and the viewed set (the web app's ``REDIS_PREFIX``);
    the viewed set is read at most once per ``viewed_every_s``."""
    from web.status import heartbeat

    send: Emit = emit if emit is not None else redis_emitter(settings, channel)[0]
    coalescer = Coalescer(interval_s)
    counts = {"consumed": 0, "updates": 0, "alerts": 0}
    beat = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    viewed = ViewedSymbols(beat, redis_prefix, viewed_every_s)

    def sink(out: list[Emission]) -> None:
        for event, payload, room in out:
            send(event, payload, room)
            counts["updates" if event == "update" else "alerts"] += 1

    def step(batch: list[Decoded]) -> list[Emission]:
        return emissions([d.event for d in batch if d.event is not None], coalescer, time.monotonic(), viewed.get())

    types: dict[str, type[contract.Event]] = {
        settings.topic("ticks"): Tick, settings.topic("metrics"): Bar,
        settings.topic("predictions"): Prediction, settings.topic("alerts"): Alert,
    }
    runner: Pipeline[Emission] = Pipeline(
        settings, group_id, types, step, sink, batch_size=2000, poll_timeout_s=interval_s / 2, shutdown=shutdown,
        consumer_overrides={"auto.offset.reset": offset_reset})
    last_beat = time.monotonic()

    def report() -> None:
        watched = viewed.get()
        heartbeat(beat, redis_prefix, "bridge", {"consumed": runner.stats.consumed, "dlq": runner.stats.dlq,
                                                 "updates": counts["updates"], "alerts": counts["alerts"],
                                                 "last_event_ms": runner.stats.last_event_ts_ms,
                                                 "viewed": None if watched is None else len(watched)})

    def after_batch(_n: int) -> None:
        nonlocal last_beat
        now = time.monotonic()
        sink(_updates(coalescer.due(now, viewed.get())))
        if now - last_beat > 2.0:
            last_beat = now
            report()

    try:
        runner.run(idle_stop_s=idle_stop_s, on_batch=after_batch,
                   holding=lambda: coalescer.next_due_in_s(time.monotonic(), viewed.get()) is not None)
    finally:
        sink(_updates(coalescer.drain(viewed.get())))
        report()
        beat.close()
    counts["consumed"] = runner.stats.consumed
    counts["viewed_reads"] = viewed.reads
    return counts

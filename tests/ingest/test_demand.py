"""Live data follows the user: watchlist and rule changes -> ``watched`` -> ingest -> ``ticks``/``history``."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any


from events.contract import FeedStatus, HistoryBar, Tick, decode
from events.db import session_factory, upgrade
from events.kafka import EventProducer, ShutdownFlag
from events.outbox import relay_once
from events.settings import Settings
from ingest.demand import DemandFollower
from ingest.history import simulated_history
from ingest.runner import run_ingest
from ingest.sim import SimSource
from tests.support import wait_for
from tests.web.conftest import Api, make_app


class IngestThread:
    """``run_ingest`` following demand in a thread, as the ``ingest`` process runs it."""

    def __init__(self, settings: Settings, floor: list[str], n_bars: int) -> None:
        self.settings, self.shutdown = settings, ShutdownFlag()
        self.demand = DemandFollower(settings, floor)
        self.source = SimSource([], seed=7)
        history = (lambda symbol, end_ms: simulated_history(symbol, bar_seconds=settings.bar_seconds,
                                                            end_ms=end_ms, n_bars=n_bars))
        self.report: Any = None
        self.thread = threading.Thread(target=self._run, args=(history,), daemon=True)

    def _run(self, history: Any) -> None:
        self.report = run_ingest(self.source, EventProducer(self.settings), self.shutdown, rate=300,
                                 demand=self.demand, history=history)

    def __enter__(self) -> "IngestThread":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown.set()
        self.thread.join(30)
        self.demand.close()


class TopicTail:
    """Everything on one topic so far, read incrementally."""

    def __init__(self, settings: Settings, name: str, cls: type) -> None:
        import uuid

        from confluent_kafka import Consumer

        self.cls, self.events = cls, []  # type: ignore[var-annotated]
        self.consumer = Consumer({**settings.kafka_common(), "group.id": f"tail-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([settings.topic(name)])

    def read(self) -> list:  # type: ignore[type-arg]
        for m in self.consumer.consume(1000, 0.1):
            if m.error() is None and m.value() is not None:
                self.events.append(decode(m.value(), self.cls))
        return self.events

    def close(self) -> None:
        self.consumer.close()


def test_a_symbol_added_through_the_api_streams_within_5_s_and_stops_when_removed(
        kafka_settings: Settings, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'demand.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url)
    app = make_app(settings)
    sessions = session_factory(settings)
    producer = EventProducer(settings)
    alice = Api(app.test_client())
    alice.register("alice@example.com")
    wl = alice.post("/api/watchlists", {"name": "mine"}).get_json()
    ticks, history = TopicTail(settings, "ticks", Tick), TopicTail(settings, "history", HistoryBar)
    try:
        with IngestThread(settings, floor=["FLOOR"], n_bars=40) as ingest:
            wait_for(lambda: any(t.symbol == "FLOOR" for t in ticks.read()), 20, "the floor symbol's ticks")
            assert not [b for b in history.read() if b.symbol != "FLOOR"]
            added_at = time.monotonic()
            assert alice.post(f"/api/watchlists/{wl['id']}/symbols", {"symbol": "AMD"}).status_code in (200, 201)
            assert relay_once(sessions, producer) >= 1
            first = wait_for(lambda: next((t for t in ticks.read() if t.symbol == "AMD"), None), 5,
                             "AMD's first tick within 5 s of adding it")
            latency_s = time.monotonic() - added_at
            # its history came first, complete, ending where the live path starts
            amd_history = [b for b in history.read() if b.symbol == "AMD"]
            assert len(amd_history) == 40 and [b.start_ms for b in amd_history] == sorted(b.start_ms for b in amd_history)
            assert amd_history[-1].ts <= first.ts
            assert abs(first.price / amd_history[-1].close - 1) < 0.05, "the live path continues the history"
            # an ingest restart keeps the set: a new follower reads it from the topic
            again = DemandFollower(settings, [])
            try:
                assert again.catch_up() == frozenset({"AMD"})
            finally:
                again.close()
            assert alice.delete(f"/api/watchlists/{wl['id']}/symbols/AMD").status_code in (200, 204)
            assert relay_once(sessions, producer) >= 1
            wait_for(lambda: "AMD" not in ingest.demand.wanted, 10, "the removal to reach ingest")

            def floor_ticks_after_last_amd() -> int:
                evs = ticks.read()
                last_amd = max(t.ts for t in evs if t.symbol == "AMD")
                return sum(1 for t in evs if t.symbol == "FLOOR" and t.ts > last_amd)

            wait_for(lambda: floor_ticks_after_last_amd() >= 200, 20, "ticks flowing on after AMD stopped")
        assert ingest.report is not None and ingest.report.history_bars == 80  # FLOOR and AMD
        feed = TopicTail(settings, "feed", FeedStatus)
        try:
            def amd_states() -> list[str] | None:
                got = [e.state for e in feed.read() if e.symbol == "AMD"]
                return got if "stopped" in got else None

            assert wait_for(amd_states, 10, "AMD's feed statuses") == ["waiting", "streaming", "stopped"]
        finally:
            feed.close()
        print(f"watch -> first tick: {latency_s * 1000:.0f} ms")
    finally:
        ticks.close()
        history.close()

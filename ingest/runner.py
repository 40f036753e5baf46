"""The ingest process: pull ticks from a source at a rate, sequence them, publish to ``ticks``.

With a :class:`~ingest.demand.DemandFollower` the loop follows the ``watched`` topic: when
the wanted set changes, each symbol new to it is first backfilled (its history published to
``history`` and flushed, so the stream job sees it no later than the first live tick), then
the source is told the whole set (``FollowingSource.follow``).

Pacing is a token bucket over the monotonic clock (``rate`` ticks per
second; 0 means as fast as the broker takes them). The producer is
idempotent with ``acks=all``; the loop flushes before it reports and before
it exits, so a clean stop loses nothing that was generated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Callable

from events import observability as obs
from events.contract import HistoryBar
from events.kafka import EventProducer, ShutdownFlag
from events.markethours import is_market_open
from ingest.base import RawTick, Sequencer, Source
from ingest.feed import FeedWatch

#: symbol, end (epoch ms) -> that symbol's closed history bars before the end, oldest first
HistoryFn = Callable[[str, int], list[HistoryBar]]
DEMAND_POLL_S = 0.1  # a non-blocking consume: cheap enough to ask often
FEED_CHECK_S = 5.0

if TYPE_CHECKING:
    from ingest.demand import DemandFollower

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    produced: int
    duplicates: int
    out_of_order: int
    elapsed_s: float
    history_bars: int = 0

    @property
    def rate(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0


class DemandTracker:
    """What the loop does when demand changes: backfill the newly wanted, then re-point the source.

    A history fetch (Yahoo's is a network round trip) runs on a small thread pool, never in
    the loop: a symbol waits in ``pending`` until its history is produced and flushed, and
    only then joins the set the source follows, so its history is durable before its first
    live tick and a slow or failing fetch holds up no other symbol. A failed fetch logs and
    lets the symbol go live without history.
    """

    def __init__(self, demand: "DemandFollower", source: Source, producer: EventProducer,
                 history: HistoryFn | None = None, clock_ms: Callable[[], int] | None = None,
                 history_workers: int = 2) -> None:
        if not hasattr(source, "follow"):
            raise ValueError(f"source {source.name} cannot follow demand; give it a fixed symbol list")
        self.demand, self.source, self.producer, self.history = demand, source, producer, history
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.wanted: frozenset[str] = frozenset()
        self.current: frozenset[str] = frozenset()  # what the source follows now
        self.pending: dict[str, Future[list[HistoryBar]]] = {}
        self.backfilled: set[str] = set()
        self.history_bars = 0
        self._pool = ThreadPoolExecutor(history_workers, thread_name_prefix="backfill") if history else None
        self._topic = producer.settings.topic("history")
        self._feed_topic = producer.settings.topic("feed")
        self._counter = obs.EVENTS_OUT.labels("ingest", "history")
        self._next_poll = self._next_check = 0.0
        market_open = (lambda _ms: True) if source.name in ("sim", "csv") else is_market_open
        self.feed = FeedWatch(source.name, market_open=market_open)

    def apply(self, wanted: frozenset[str]) -> None:
        """A new wanted set: start the backfills it needs, follow the rest at once."""
        before = self.wanted
        self.wanted = wanted
        for symbol in set(self.pending) - wanted:  # unwatched while its history was fetched
            self.pending.pop(symbol).cancel()
        if self._pool is not None and self.history is not None:
            now_ms = self.clock_ms()
            for symbol in sorted(wanted - before - self.backfilled - set(self.pending)):
                self.pending[symbol] = self._pool.submit(self.history, symbol, now_ms)
        added, removed = sorted(wanted - before), sorted(before - wanted)
        self.feed.follow(added, removed, self.clock_ms())
        self._follow()
        if added or removed:
            log.info("ingest: following %d symbols (+%s -%s)", len(wanted), ",".join(added[:20]) or "0",
                     ",".join(removed[:20]) or "0")

    def _collect(self) -> None:
        """Publish the histories that are ready (one flush), then let those symbols go live."""
        sent = 0
        for symbol, fut in list(self.pending.items()):
            if not fut.done():
                continue
            del self.pending[symbol]
            try:
                bars = fut.result()
            except Exception as exc:  # noqa: BLE001 - a source's history failing must not stop live data
                log.warning("ingest: no history for %s (%s: %s); live data only", symbol, type(exc).__name__, exc)
                continue
            for bar in bars:
                self.producer.produce(bar, self._topic)
            sent += len(bars)
            self.backfilled.add(symbol)
        if sent:
            self.producer.flush()  # history is durable before the first live tick of those symbols
            self._counter.inc(sent)
            self.history_bars += sent

    def _follow(self) -> None:
        self._collect()
        follow = self.wanted - set(self.pending)
        if follow != self.current:
            self.source.follow(follow)
            self.current = follow
        self._publish_feed()

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait for the backfills in flight (at start: the set as it stood goes live together)."""
        if self.pending:
            wait(list(self.pending.values()), timeout=timeout_s)
        self._follow()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _publish_feed(self) -> None:
        for status in self.feed.drain():
            self.producer.produce(status, self._feed_topic)

    def start(self) -> None:
        self.apply(self.demand.catch_up())
        self.settle()

    def saw(self, raws: list[RawTick]) -> None:
        """The ticks of one published batch (only each symbol's newest matters)."""
        self.feed.ticks({r.symbol: r.ts_ms for r in raws}.items(), self.clock_ms())

    def step(self, now_s: float) -> None:
        if now_s < self._next_poll:
            return
        self._next_poll = now_s + DEMAND_POLL_S
        wanted = self.demand.poll()
        if wanted is not None:
            self.apply(wanted)
        elif self.pending:
            self._follow()
        if now_s >= self._next_check:
            self._next_check = now_s + FEED_CHECK_S
            problems = getattr(self.source, "problems", None)
            now_ms = self.clock_ms()
            if problems is not None:
                self.feed.problems(problems(), now_ms)
            self.feed.check(now_ms)
        self._publish_feed()


def run_ingest(source: Source, producer: EventProducer, shutdown: ShutdownFlag, *, rate: float = 50.0,
               max_ticks: int | None = None, duration_s: float | None = None, batch: int = 2000,
               report_every_s: float = 10.0, demand: "DemandFollower | None" = None,
               history: HistoryFn | None = None) -> IngestReport:
    """Publish ticks until the source is exhausted, ``max_ticks``/``duration_s`` is reached, or shutdown.

    With ``demand`` the source follows the watched symbols (backfilled through ``history``
    when given); without it the source's own symbol list is published as before.
    """
    seq = Sequencer(source.name, dedupe=source.dedupe)
    out_counter = obs.EVENTS_OUT.labels("ingest", "ticks")
    topic = producer.settings.topic("ticks")
    tracker = DemandTracker(demand, source, producer, history) if demand is not None else None
    if tracker is not None:
        tracker.start()
    start = last_report = time.monotonic()
    produced = 0
    while not shutdown.is_set():
        now = time.monotonic()
        if tracker is not None:
            tracker.step(now)
        if duration_s is not None and now - start >= duration_s:
            break
        if max_ticks is not None and produced >= max_ticks:
            break
        want = batch
        if rate > 0:
            elapsed = now - start
            want = min(batch, int(elapsed * rate) + 1 - produced)
            if want <= 0:
                shutdown.wait(min(0.05, (produced + 1 - elapsed * rate) / rate))  # pacing, not synchronisation
                continue
        if max_ticks is not None:
            want = min(want, max_ticks - produced)
        raws = source.next_batch(want)
        if raws is None:
            break
        if not raws:
            shutdown.wait(0.2)  # source has nothing yet (e.g. polling between intervals)
            continue
        before = produced
        for raw in raws:
            event = seq.to_event(raw)
            if event is not None:
                producer.produce(event, topic)
                produced += 1
        out_counter.inc(produced - before)
        if tracker is not None:
            tracker.saw(raws)
        if now - last_report >= report_every_s:
            producer.flush()
            log.info("ingest: %d ticks (%.0f/s), %d duplicates dropped, %d out of order",
                     produced, produced / (now - start), seq.stats.duplicates, seq.stats.out_of_order)
            last_report = now
    if tracker is not None:
        tracker.close()
    producer.flush()
    return IngestReport(produced, seq.stats.duplicates, seq.stats.out_of_order, time.monotonic() - start,
                        tracker.history_bars if tracker is not None else 0)

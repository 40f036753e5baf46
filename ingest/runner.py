"""The ingest process: pull ticks from a source at a rate, sequence them, publish to ``ticks``.

Pacing is a token bucket over the monotonic clock (``rate`` ticks per
second; 0 means as fast as the broker takes them). The producer is
idempotent with ``acks=all``; the loop flushes before it reports and before
it exits, so a clean stop loses nothing that was generated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from events import observability as obs
from events.kafka import EventProducer, ShutdownFlag
from ingest.base import Sequencer, Source

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    produced: int
    duplicates: int
    out_of_order: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run_ingest(source: Source, producer: EventProducer, shutdown: ShutdownFlag, *, rate: float = 50.0,
               max_ticks: int | None = None, duration_s: float | None = None, batch: int = 2000,
               report_every_s: float = 10.0) -> IngestReport:
    """Publish ticks until the source is exhausted, ``max_ticks``/``duration_s`` is reached, or shutdown."""
    seq = Sequencer(source.name, dedupe=source.dedupe)
    out_counter = obs.EVENTS_OUT.labels("ingest", "ticks")
    topic = producer.settings.topic("ticks")
    start = last_report = time.monotonic()
    produced = 0
    while not shutdown.is_set():
        now = time.monotonic()
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
        if now - last_report >= report_every_s:
            producer.flush()
            log.info("ingest: %d ticks (%.0f/s), %d duplicates dropped, %d out of order",
                     produced, produced / (now - start), seq.stats.duplicates, seq.stats.out_of_order)
            last_report = now
    producer.flush()
    return IngestReport(produced, seq.stats.duplicates, seq.stats.out_of_order, time.monotonic() - start)

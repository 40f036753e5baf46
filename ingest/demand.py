"""Ingest follows demand: the ``watched`` topic, read from the beginning, plus an operator floor.

:class:`DemandFollower` owns one consumer assigned to every partition of the compacted
``watched`` topic at the beginning (no consumer group offsets: every start rebuilds the
whole set, so a restart keeps it). :meth:`DemandFollower.catch_up` reads to the end
offsets taken at start (the set as it stood), :meth:`DemandFollower.poll` applies what
arrived since, without blocking. The wanted set is the floor (``INGEST_SYMBOLS``, or
``--symbols``) plus every symbol with a live ``Watched`` record; a tombstone or an
undecodable record removes nothing from the floor and is counted, never fatal.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from events.contract import InvalidEvent, Watched, decode
from events.kafka import consumer_config
from events.settings import Settings
from events.status import end_offsets

log = logging.getLogger(__name__)

__all__ = ["DemandFollower"]


class DemandFollower:
    """The set of symbols ingest should publish, following the ``watched`` topic."""

    def __init__(self, settings: Settings, floor: Iterable[str] = ()) -> None:
        self.topic = settings.topic("watched")
        self.floor = frozenset(s.strip().upper() for s in floor if s.strip())
        self.watched: dict[str, int] = {}
        self.invalid = 0
        self._consumer = Consumer(consumer_config(settings, "tickerbell-ingest-demand", **{
            "isolation.level": "read_committed", "enable.partition.eof": False}))
        meta = self._consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {self.topic} is missing: run `python -m events topics` (the release phase)")
        self._partitions = len(meta.partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self._partitions)])

    @property
    def wanted(self) -> frozenset[str]:
        return self.floor | frozenset(self.watched)

    def _apply(self, msgs: list) -> bool:  # type: ignore[type-arg]
        before = self.wanted
        for msg in msgs:
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("demand: %s", msg.error())
                continue
            symbol = (msg.key() or b"").decode(errors="replace")
            if msg.value() is None:
                self.watched.pop(symbol, None)
                continue
            try:
                ev = decode(msg.value(), Watched)
            except InvalidEvent as exc:
                self.invalid += 1
                log.warning("demand: skipping an invalid record at %s[%d]@%d: %s",
                            msg.topic(), msg.partition(), msg.offset(), exc)
                continue
            self.watched[ev.symbol] = ev.watchers
        return self.wanted != before

    def catch_up(self, timeout_s: float = 30.0) -> frozenset[str]:
        """Read everything the topic held when called; returns the wanted set."""
        ends = end_offsets(self._consumer, self.topic, self._partitions)
        deadline = time.monotonic() + timeout_s
        tps = [TopicPartition(self.topic, p) for p in range(self._partitions)]
        while True:
            # the consumer's position, not the last offset seen: compaction leaves gaps
            position = [max(tp.offset, 0) for tp in self._consumer.position(tps)]
            if all(position[p] >= ends[p] for p in range(self._partitions)):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"demand: could not read {self.topic} to its end within {timeout_s:.0f} s")
            self._apply(self._consumer.consume(500, timeout=0.5))
        log.info("demand: %d watched symbols, %d on the floor", len(self.watched), len(self.floor))
        return self.wanted

    def poll(self) -> frozenset[str] | None:
        """Apply what arrived; the new wanted set if it changed, else None. Never blocks."""
        msgs = self._consumer.consume(500, timeout=0)
        if not msgs:
            return None
        return self.wanted if self._apply(msgs) else None

    def close(self) -> None:
        self._consumer.close()

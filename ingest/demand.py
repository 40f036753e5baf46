"""Ingest follows demand: the ``watched`` topic, read from the beginning, plus an operator floor.

:class:`DemandFollower` owns one consumer assigned to every partition of the compacted
``watched`` topic at the beginning (no consumer group offsets: every start rebuilds the
whole set, so a restart keeps it). :meth:`DemandFollower.catch_up` reads to the end
(the set as it stood, through ``events.pipeline_read.read_to_end``) and follows from
there, :meth:`DemandFollower.poll` applies what arrived since, without blocking. The wanted set is the floor (``INGEST_SYMBOLS``, or
``--symbols``) plus every symbol with a live ``Watched`` record; a tombstone or an
undecodable record removes nothing from the floor and is counted, never fatal.
"""

from __future__ import annotations

import logging
from typing import Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from events.contract import InvalidEvent, Watched, decode
from events.kafka import consumer_config
from events.pipeline_read import read_to_end
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["DemandFollower"]


class DemandFollower:
    """The set of symbols ingest should publish, following the ``watched`` topic."""

    def __init__(self, settings: Settings, floor: Iterable[str] = ()) -> None:
        self.settings = settings
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

    def _apply_one(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("demand: %s", err)
            return
        symbol = (msg.key() or b"").decode(errors="replace")
        value = msg.value()
        if value is None:
            self.watched.pop(symbol, None)
            return
        try:
            ev = decode(value, Watched)
        except InvalidEvent as exc:
            self.invalid += 1
            log.warning("demand: skipping an invalid record at %s[%s]@%s: %s",
                        msg.topic(), msg.partition(), msg.offset(), exc)
            return
        self.watched[ev.symbol] = ev.watchers

    def _apply(self, msgs: list[Message]) -> bool:
        before = self.wanted
        for msg in msgs:
            self._apply_one(msg)
        return self.wanted != before

    def catch_up(self, timeout_s: float = 30.0) -> frozenset[str]:
        """Read everything the topic held when called (``events.pipeline_read.read_to_end``), then
        follow from there; returns the wanted set."""
        ends: dict[int, int] = {}
        read_to_end(self.settings, self.topic, self._apply_one, timeout_s=timeout_s, ends=ends,
                    group_prefix="tickerbell-ingest-demand-")
        self._consumer.assign([TopicPartition(self.topic, p, ends.get(p, OFFSET_BEGINNING))
                               for p in range(self._partitions)])
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

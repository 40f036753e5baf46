"""The one consumer pipeline every stage uses (arroyo's strategies, in one small module).

    poll -> decode (bad bytes to the DLQ) -> step (pure) -> sink (the I/O) -> flush -> commit

A stage supplies three things: the event type of each topic it reads (``types``), its
``step`` (decoded events in, outputs out, no I/O) and its ``sink`` (what makes the outputs
durable: produce to Kafka, write SQL, emit to Redis, enqueue Celery tasks). Everything else
is here, once: the DLQ, back-off on recoverable errors, offsets committed only after the sink
succeeded and the producer flushed, lag and batch metrics, idle stop and shutdown by flag.

:class:`ConsumerLoop` is the loop itself (poll, lag, run until the flag or idle, close);
:class:`Pipeline` is the at-least-once variant (the sink, then a consumer commit); the rule
engine (``alerts.engine``) is the exactly-once variant: the same loop with a transactional
commit step (``events.pipeline_txn``). A crash anywhere before the commit replays the batch;
every output carries a deterministic id and every sink is idempotent, so a replay is harmless.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from events import observability as obs
from events.contract import Event, InvalidEvent, decode, topic_of
from events.kafka import Backoff, EventProducer, ShutdownFlag, consumer_config, subscribe
from events.pipeline_loop import (ConsumerLoop, IdleClock, commit_offsets, commit_positions, dead_letter,
                                  dlq_headers, has_data, rewind)
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["ConsumerLoop", "Decoded", "IdleClock", "Pipeline", "ProduceSink", "RunnerStats", "StreamRunner",
           "commit_offsets", "dead_letter", "dlq_headers", "has_data", "rewind"]

O = TypeVar("O")


@dataclass
class Decoded:
    """A consumed message together with its decoded event."""

    message: Message
    event: Event | None  # None for a tombstone


@dataclass
class RunnerStats:
    consumed: int = 0
    produced: int = 0
    dlq: int = 0
    batches: int = 0
    dlq_by_topic: Counter[str] = field(default_factory=Counter)
    last_event_ts_ms: int = 0


class ProduceSink:
    """The sink of a stage whose outputs are events: queue each on its topic (the pipeline
    flushes the producer before it commits)."""

    def __init__(self, producer: EventProducer, output_topic: Callable[[Event], str] | None = None) -> None:
        self.producer = producer
        self.output_topic = output_topic

    def __call__(self, outputs: Sequence[Event]) -> None:
        for event in outputs:
            self.producer.produce(event, self.output_topic(event) if self.output_topic else None)


class Pipeline(ConsumerLoop, Generic[O]):
    """poll -> decode -> step -> sink -> flush -> commit, at least once, until the flag is set.

    ``types`` maps each consumed (deployed) topic to its event class; ``step`` is pure;
    ``sink`` does the I/O (default: produce the outputs, which must then be events). A sink
    error of a ``recoverable`` type pauses the partitions and retries the same outputs with
    back-off; nothing is committed before it succeeds. Any other error propagates (the process
    dies and its restart replays from the last commit).
    """

    consumer: Consumer  # subscribed from the start (the engine's loop creates its own later)

    def __init__(self, settings: Settings, group_id: str, types: dict[str, type[Event]],
                 step: Callable[[list[Decoded]], Iterable[O]], sink: Callable[[list[O]], None] | None = None, *,
                 batch_size: int = 1000, poll_timeout_s: float = 0.2, shutdown: ShutdownFlag | None = None,
                 producer: EventProducer | None = None, allow_tombstones: bool = False,
                 consumer_overrides: dict[str, Any] | None = None,
                 output_topic: Callable[[Event], str] | None = None, process: str | None = None,
                 lag_every_s: float = 5.0, recoverable: tuple[type[BaseException], ...] = (),
                 backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.process = process or group_id
        self.lag_every_s = lag_every_s
        self.types = types
        self.step = step
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.shutdown = shutdown or ShutdownFlag()
        self.allow_tombstones = allow_tombstones
        self.producer = producer or EventProducer(settings)
        self._produces = sink is None  # the outputs are events for Kafka: count them as produced
        self.sink: Callable[[list[O]], None] = sink or ProduceSink(self.producer, output_topic)  # type: ignore[assignment]
        self.recoverable = recoverable
        self.backoff = backoff or Backoff()
        self.consumer = Consumer(consumer_config(settings, group_id, **(consumer_overrides or {})))
        self.stats = RunnerStats()
        self._retry: tuple[list[Message], list[tuple[Message, str]], list[O], float] | None = None
        self._pins: list[TopicPartition] = []
        self._live = (consumer_overrides or {}).get("auto.offset.reset") == "latest"
        subscribe(self.consumer, list(types), self._on_assign, self._on_revoke, self._on_revoke)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: partitions assigned: %s", self.process, _names(partitions))
        if self._live and partitions:
            self._pin_start(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: partitions revoked: %s", self.process, _names(partitions))

    def _pin_start(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A live view (``auto.offset.reset=latest``) starts a partition the group never committed
        at its end, but only once: the end is looked up now and committed before the next batch, so
        a process killed before it consumed anything there resumes from that point after a restart,
        instead of from a later "latest" that skips what arrived while it was down. If the
        look-up fails, the reset policy applies as before (logged)."""
        try:
            committed = consumer.committed(partitions, timeout=10)
            fresh = [TopicPartition(tp.topic, tp.partition, OFFSET_END) for tp in committed if tp.offset < 0]
            ends = {(tp.topic, tp.partition): tp.offset
                    for tp in (consumer.offsets_for_times(fresh, timeout=10) if fresh else []) if tp.offset >= 0}
        except KafkaException as exc:
            log.warning("%s: the start of %d new partitions could not be pinned (%s): they start at the end "
                        "when first fetched", self.process, len(partitions), exc)
            return
        start = [TopicPartition(tp.topic, tp.partition, ends.get((tp.topic, tp.partition), tp.offset))
                 for tp in committed]
        consumer.incremental_assign(start)
        self._pins += [tp for tp in start if (tp.topic, tp.partition) in ends]
        log.info("%s: starting at %s (committed, or the end for a partition never committed: %d)", self.process,
                 ", ".join(f"{tp.topic}[{tp.partition}]@{tp.offset}" for tp in start), len(ends))

    def _commit_pins(self) -> None:
        """Commit the pinned starts (called outside the rebalance callback, before the next batch)."""
        pins, self._pins = self._pins, []
        assert self.consumer is not None
        commit_positions(self.consumer, pins, self.shutdown)

    def consumed_total(self) -> int:
        return self.stats.consumed

    def decode(self, msgs: list[Message]) -> tuple[list[Decoded], list[tuple[Message, str]]]:
        """The decoded batch and the invalid messages with their reasons."""
        batch: list[Decoded] = []
        invalid: list[tuple[Message, str]] = []
        for msg in msgs:
            if not has_data(msg):
                continue
            value = msg.value()
            if value is None and self.allow_tombstones:
                batch.append(Decoded(msg, None))
                continue
            try:
                event = decode(value, self.types[msg.topic() or ""])
            except InvalidEvent as exc:
                invalid.append((msg, str(exc)))
                continue
            batch.append(Decoded(msg, event))
            if event.ts > self.stats.last_event_ts_ms:
                self.stats.last_event_ts_ms = event.ts
        return batch, invalid

    def run_once(self) -> int:
        """Process one batch (or retry the one whose sink failed); return how many messages it held."""
        if self._retry is not None:
            return self._retry_sink()
        msgs = self.poll()
        if self._pins:
            self._commit_pins()
        if not msgs:
            return 0
        started = time.perf_counter()
        batch, invalid = self.decode(msgs)
        outputs = list(self.step(batch)) if batch else []
        return self._deliver(msgs, invalid, outputs, started)

    def _deliver(self, msgs: list[Message], invalid: list[tuple[Message, str]], outputs: list[O],
                 started: float) -> int:
        try:
            if outputs:
                self.sink(outputs)
        except self.recoverable as exc:
            # the database, Redis or a broker is away: hold this batch, stop fetching, try again later
            assert self.consumer is not None
            self._retry = (msgs, invalid, outputs, started)
            self.consumer.pause(self.consumer.assignment())
            delay = self.backoff.failed()
            log.warning("%s: %s: %s; retrying the batch in %.1f s", self.process, type(exc).__name__, exc, delay)
            self.shutdown.wait(delay)
            return 0
        if self._retry is not None:
            self._retry = None
            assert self.consumer is not None
            self.consumer.resume(self.consumer.assignment())
        self.backoff.succeeded()
        for msg, reason in invalid:
            dead_letter(self.producer.produce_bytes, msg, reason, self.process)
            self.stats.dlq += 1
            self.stats.dlq_by_topic[msg.topic() or ""] += 1
        self.producer.flush()
        assert self.consumer is not None
        commit_offsets(self.consumer, msgs, self.shutdown)
        self._count(msgs, outputs, started)
        return len(msgs)

    def _retry_sink(self) -> int:
        assert self.consumer is not None and self._retry is not None
        # keeps the group session alive; the paused partitions return nothing, and whatever a
        # partition assigned meanwhile returns is read again once the held batch is through
        extra = self.consumer.consume(self.batch_size, 0)
        if extra:
            rewind(self.consumer, extra)
            self.consumer.pause(self.consumer.assignment())
        msgs, invalid, outputs, started = self._retry
        return self._deliver(msgs, invalid, outputs, started)

    def _count(self, msgs: list[Message], outputs: list[O], started: float) -> None:
        self.stats.consumed += len(msgs)
        self.stats.batches += 1
        for m in msgs:
            obs.EVENTS_IN.labels(self.process, m.topic() or "").inc()
        if self._produces:
            self.stats.produced += len(outputs)
            for out in outputs:
                if isinstance(out, Event):
                    obs.EVENTS_OUT.labels(self.process, topic_of(out)).inc()
        obs.BATCH_SECONDS.labels(self.process).observe(time.perf_counter() - started)
        if self.stats.last_event_ts_ms:
            obs.LAST_EVENT_TS.labels(self.process).set(self.stats.last_event_ts_ms / 1000)

    def send_to_dlq(self, msg: Message, reason: str) -> None:
        """Dead-letter ``msg`` now (made durable by the next flush)."""
        dead_letter(self.producer.produce_bytes, msg, reason, self.process)
        self.stats.dlq += 1
        self.stats.dlq_by_topic[msg.topic() or ""] += 1

    def run(self, *, idle_stop_s: float | None = None, max_messages: int | None = None,
            on_batch: Callable[[int], None] | None = None, holding: Callable[[], bool] | None = None) -> RunnerStats:
        """Loop until the shutdown flag is set (or ``idle_stop_s`` without input); see :meth:`run_loop`."""
        self.run_loop(idle_stop_s=idle_stop_s, max_messages=max_messages, on_batch=on_batch, holding=holding)
        return self.stats

    def close(self) -> None:
        """Flush what was produced and leave the group. A batch still held for a retry is not
        committed: the next owner of its partitions reads it again."""
        try:
            self.producer.flush()
        finally:
            assert self.consumer is not None
            self.consumer.close()


def _names(partitions: list[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = {}
    for tp in partitions:
        by_topic.setdefault(tp.topic or "", []).append(tp.partition or 0)
    return "; ".join(f"{t} {sorted(ps)}" for t, ps in sorted(by_topic.items())) or "none"


#: the name the stages used before the sink was split out of the transform (same arguments)
StreamRunner = Pipeline

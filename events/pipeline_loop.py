"""The loop under every consumer (:mod:`events.pipeline`) and its helpers, said once.

Dead letters (:func:`dead_letter`: the message as it came, to ``<topic>.dlq``, with the
reason and its origin in headers, logged and counted), consumer errors (:func:`has_data`),
the offset commit after the work (:func:`commit_offsets`), rewinding a batch, the idle
clock of one-shot runs, and :class:`ConsumerLoop`: poll, report lag, run until the
shutdown flag (or idle), close.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from events import observability as obs
from events.contract import DLQ_SUFFIX
from events.kafka import Backoff, ShutdownFlag

log = logging.getLogger("events.pipeline")

__all__ = ["ConsumerLoop", "IdleClock", "commit_offsets", "commit_positions", "dead_letter", "dlq_headers", "has_data", "rewind"]

Headers = list[tuple[str, str | bytes | None]]
ProduceBytes = Callable[[str, bytes | None, bytes | None, Headers], None]


# --- dead letters ----------------------------------------------------------------------

def dlq_headers(msg: Message, reason: str) -> Headers:
    return [
        ("dlq.error", reason[:2000].encode()),
        ("dlq.topic", (msg.topic() or "").encode()),
        ("dlq.partition", str(msg.partition()).encode()),
        ("dlq.offset", str(msg.offset()).encode()),
        ("dlq.ts_ms", str(int(time.time() * 1000)).encode()),
    ]


def dead_letter(produce: ProduceBytes, msg: Message, reason: str, process: str) -> None:
    """Send ``msg`` as it came to ``<topic>.dlq`` with the reason and its origin in headers, log it
    and count it. ``produce`` queues bytes (an :class:`EventProducer`'s, or a transaction's); the
    caller makes it durable before committing the offset of ``msg``."""
    topic = msg.topic() or ""
    log.warning("dead-lettered %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), reason,
                extra={"topic": topic, "partition": msg.partition(), "offset": msg.offset()})
    produce(topic + DLQ_SUFFIX, msg.key(), msg.value(), dlq_headers(msg, reason))
    obs.DLQ.labels(process, topic).inc()


# --- consumer helpers --------------------------------------------------------------------

def has_data(msg: Message) -> bool:
    """Whether a consumed message carries data; consumer errors are handled here in one place:
    end-of-partition notices are skipped, retriable errors logged and skipped, fatal ones raised."""
    err = msg.error()
    if err is None:
        return True
    if err.code() == KafkaError._PARTITION_EOF:
        return False
    if err.fatal() or not err.retriable():
        raise KafkaException(err)
    log.warning("consumer error (retriable): %s", err)
    return False


# the group coordinator is away or moving (a broker restart, a leader change): ask again shortly
COMMIT_RETRIABLE = frozenset({
    KafkaError._WAIT_COORD, KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT, KafkaError.NETWORK_EXCEPTION, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
})


def _edges(msgs: Iterable[Message], last: bool) -> dict[tuple[str, int], int]:
    """The last (or first) data offset of each partition in ``msgs``."""
    out: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if m.error() is None and topic is not None and partition is not None and offset is not None:
            if last:
                out[(topic, partition)] = offset
            else:
                out.setdefault((topic, partition), offset)
    return out


def commit_offsets(consumer: Consumer, msgs: list[Message], shutdown: ShutdownFlag | None = None) -> bool:
    """Synchronously commit the position after the last data message of each partition in ``msgs``;
    return whether the commit was made.

    Call only once everything those messages caused is durable: that ordering is what makes a
    crash replay instead of lose. While the coordinator is unreachable the commit is retried
    with back-off (until ``shutdown``); a commit the group refuses (it rebalanced meanwhile) is
    dropped with a warning: the messages are then read again, which every consumer here
    absorbs (deterministic ids, idempotent writes). Fatal errors are raised.
    """
    last = _edges(msgs, last=True)
    if not last:
        return True
    return commit_positions(consumer, [TopicPartition(t, p, o + 1) for (t, p), o in last.items()], shutdown)


def commit_positions(consumer: Consumer, offsets: list[TopicPartition], shutdown: ShutdownFlag | None = None) -> bool:
    """Synchronously commit ``offsets`` (the next offset to read per partition), with
    :func:`commit_offsets`'s retries; return whether the commit was made."""
    backoff = Backoff(first_s=0.2, max_s=5.0)
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if not isinstance(err, KafkaError) or err.fatal():
                raise
            if err.code() not in COMMIT_RETRIABLE:
                log.warning("offset commit dropped (%s): those messages will be read again", err.str())
                return False
            if shutdown is not None and shutdown.is_set():
                log.warning("offset commit abandoned at shutdown (%s): those messages will be read again",
                            err.str())
                return False
            delay = backoff.failed()
            log.warning("offset commit failed (%s); retrying in %.1f s", err.str(), delay)
            if shutdown is not None:
                shutdown.wait(delay)
            else:
                time.sleep(delay)


def rewind(consumer: Consumer, msgs: list[Message]) -> None:
    """Seek each partition back to the first message of ``msgs``, so the next poll reads them again."""
    for (topic, partition), offset in _edges(msgs, last=False).items():
        consumer.seek(TopicPartition(topic, partition, offset))


class IdleClock:
    """When a one-shot run (tests, replays) may stop: ``idle_s`` without input, counted only
    once the consumer holds partitions, so a slow group join is never mistaken for silence."""

    def __init__(self, idle_s: float | None, consumer: Consumer | None = None) -> None:
        self.idle_s = idle_s
        self.consumer = consumer
        self.since: float | None = None

    def busy(self) -> None:
        self.since = time.monotonic()

    def expired(self) -> bool:
        if self.idle_s is None:
            return False
        now = time.monotonic()
        if self.since is None:
            if self.consumer is not None and not self.consumer.assignment():
                return False
            self.since = now
        return now - self.since > self.idle_s


# --- the loop ------------------------------------------------------------------------------

class ConsumerLoop:
    """Poll a batch, process it, until the shutdown flag is set (or idle); report lag on the way.

    A variant implements :meth:`run_once` (one batch, committed when it returns),
    :meth:`consumed_total` and :meth:`close`; it sets ``consumer`` before :meth:`run_loop`.
    """

    consumer: Consumer | None
    shutdown: ShutdownFlag
    process: str
    batch_size: int
    poll_timeout_s: float
    lag_every_s: float = 5.0
    _lag_at: float = 0.0

    def poll(self, timeout_s: float | None = None) -> list[Message]:
        """One ``consume`` of up to ``batch_size`` messages (blocks up to ``timeout_s``, by default
        ``poll_timeout_s``, or until the batch is full)."""
        assert self.consumer is not None
        wait = self.poll_timeout_s if timeout_s is None else timeout_s
        msgs: list[Message] = self.consumer.consume(self.batch_size, wait)
        if time.monotonic() - self._lag_at > self.lag_every_s:
            self.report_lag()
        return msgs

    def report_lag(self) -> None:
        """Update the consumer-lag gauge for the assigned partitions (cheap: cached watermarks)."""
        self._lag_at = time.monotonic()
        if self.consumer is None:
            return
        try:
            assigned = self.consumer.assignment()
            if not assigned:
                return
            for tp in self.consumer.position(assigned):
                # the high watermark of each fetch response, kept by the client: no broker round
                # trip (24 of those took seconds on a busy broker, and held up batches and stops)
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    obs.CONSUMER_LAG.labels(self.process, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
        except KafkaException as exc:
            log.debug("lag report failed: %s", exc)

    def run_once(self) -> int:
        """Process one batch; return how many messages it held."""
        raise NotImplementedError

    def consumed_total(self) -> int:
        """Messages consumed (and committed) so far."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run_loop(self, *, idle_stop_s: float | None = None, max_messages: int | None = None,
                 on_batch: Callable[[int], None] | None = None, holding: Callable[[], bool] | None = None) -> None:
        """Call :meth:`run_once` until the flag is set, ``idle_stop_s`` passes without input once
        partitions are held (while ``holding()`` says the stage still buffers output, it is not
        idle), or ``max_messages`` were consumed; then :meth:`close`. ``on_batch(n)`` runs after
        every batch, committed or empty (heartbeats, model reloads, timed flushes)."""
        try:
            idle = IdleClock(idle_stop_s, self.consumer)
            while not self.shutdown.is_set():
                n = self.run_once()
                if on_batch is not None:
                    on_batch(n)
                if n:
                    idle.busy()
                elif (holding is None or not holding()) and idle.expired():
                    break
                if max_messages is not None and self.consumed_total() >= max_messages:
                    break
        except BaseException:
            self.failed()
            raise
        finally:
            self.close()

    def failed(self) -> None:
        """Called when a batch raised, before :meth:`close` (the state may hold part of a batch)."""

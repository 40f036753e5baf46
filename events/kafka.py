"""Kafka clients for every stage: idempotent producer, manual-commit consumer, DLQ, runner.

The runner is the one loop every Python stage uses (arroyo's shape):
poll a batch -> decode (bad bytes to the DLQ) -> pure transform -> produce
-> flush -> commit the consumed offsets. Offsets are committed only after the
output is durable, so a crash replays (at-least-once; outputs carry
deterministic ids so consumers deduplicate). SIGTERM/SIGINT set a flag; the
batch in hand is finished and committed before the consumer closes.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from events import observability as obs
from events.contract import DLQ_SUFFIX, Event, InvalidEvent, decode, encode, topic_of
from events.settings import Settings

log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """A produced message was not acknowledged by the broker."""


# --- topics --------------------------------------------------------------------------

@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


DAY_MS = 86_400_000


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic Tickerbell uses, with partitions and retention."""
    p = settings.kafka_partitions
    keyed = {"cleanup.policy": "delete", "compression.type": "producer"}
    specs = [
        TopicSpec(settings.topic("ticks"), p, {**keyed, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.topic("metrics"), p, {**keyed, "retention.ms": str(90 * DAY_MS)}),
        TopicSpec(settings.topic("predictions"), p, {**keyed, "retention.ms": str(90 * DAY_MS)}),
        TopicSpec(settings.topic("alerts"), p, {**keyed, "retention.ms": str(365 * DAY_MS)}),
        TopicSpec(settings.topic("rules"), 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(settings.topic("watched"), 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
        TopicSpec(settings.topic("history"), p, {**keyed, "retention.ms": str(7 * DAY_MS)}),
        TopicSpec(settings.topic("feed"), 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}),
    ]
    dlq = {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
    specs += [TopicSpec(s.name + DLQ_SUFFIX, 1, dlq) for s in list(specs)]
    return specs


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_common())


def ensure_topics(settings: Settings, specs: Sequence[TopicSpec] | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics (idempotent); return the names created."""
    specs = list(specs if specs is not None else topic_specs(settings))
    admin = admin_client(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    new = [
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=settings.kafka_replication_factor, config=s.config)
        for s in specs if s.name not in existing
    ]
    created: list[str] = []
    for name, fut in (admin.create_topics(new, operation_timeout=timeout_s) if new else {}).items():
        try:
            fut.result(timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


# --- producer ------------------------------------------------------------------------

READINESS_PROBE = "tickerbell-readiness-probe"


def wait_for_coordinators(settings: Settings, timeout_s: float = 120.0) -> float:
    """Block until the broker's group and transaction coordinators answer; return the seconds waited.

    A freshly formatted broker creates ``__consumer_offsets`` and ``__transaction_state`` on
    first use and answers "coordinator load in progress" meanwhile: consumer groups cannot
    join and idempotent producers get no id. Waiting here once (``make up``, the test
    session) keeps that start-up delay out of everything that follows.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    admin = admin_client(settings)
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.describe_consumer_groups([READINESS_PROBE], request_timeout=5)[READINESS_PROBE].result(timeout=10)
            break
        except KafkaException as exc:
            last = exc
            time.sleep(0.25)  # the broker is loading its offsets topic; ask again shortly
    else:
        raise TimeoutError(f"group coordinator not ready within {timeout_s:.0f} s: {last}")
    producer = Producer({**settings.kafka_common(), "transactional.id": READINESS_PROBE, "log_level": 3})
    remaining = max(1.0, deadline - time.monotonic())
    try:
        producer.init_transactions(remaining)  # returns once the transaction coordinator has loaded
    except KafkaException as exc:
        raise TimeoutError(f"transaction coordinator not ready within {timeout_s:.0f} s: {exc}") from exc
    return time.monotonic() - started


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_common(),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.size": 512 * 1024,
        "queue.buffering.max.messages": 500_000,
        # the Java client's hash of the key (Spark writes `metrics` with it): a symbol lands in the
        # same partition number of every topic, which lets the rule engine scale out
        "partitioner": "murmur2_random",
    }
    conf.update(overrides)
    return conf


class EventProducer:
    """An idempotent producer of contract events that checks every delivery report.

    ``produce`` never blocks for long: when librdkafka's queue is full it
    serves delivery reports until there is room. ``flush`` raises
    :class:`DeliveryError` if any message since the last flush failed.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings, **overrides))
        self._errors: list[str] = []
        self.delivered = 0

    @property
    def raw(self) -> Producer:
        return self._producer

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err}")
        else:
            self.delivered += 1

    def produce_bytes(self, topic: str, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)

    def produce(self, event: Event, topic: str | None = None) -> None:
        """Queue ``event`` on its contract topic (prefixed per settings), keyed by its key."""
        self.produce_bytes(topic or self.settings.topic(topic_of(event)), event.key, encode(event))

    def flush(self, timeout_s: float = 30.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise DeliveryError(f"{remaining} messages not delivered within {timeout_s}s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"{len(errors)} deliveries failed, first: {errors[0]}")


# --- consumer ------------------------------------------------------------------------

def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_common(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
    }
    conf.update(overrides)
    return conf


class ShutdownFlag:
    """Set by SIGTERM/SIGINT (or by hand); loops check it between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> "ShutdownFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.set())
        return self

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)


def dlq_headers(msg: Message, reason: str) -> list[tuple[str, str | bytes | None]]:
    return [
        ("dlq.error", reason[:2000].encode()),
        ("dlq.topic", (msg.topic() or "").encode()),
        ("dlq.partition", str(msg.partition()).encode()),
        ("dlq.offset", str(msg.offset()).encode()),
        ("dlq.ts_ms", str(int(time.time() * 1000)).encode()),
    ]


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


def commit_offsets(consumer: Consumer, msgs: list[Message], shutdown: "ShutdownFlag | None" = None) -> bool:
    """Synchronously commit the position after the last data message of each partition in ``msgs``;
    return whether the commit was made.

    Call only once everything those messages caused is durable (produced and flushed, or
    written to the database): that ordering is what makes a crash replay instead of lose.
    While the coordinator is unreachable the commit is retried with back-off (until ``shutdown``);
    a commit the group refuses (it rebalanced meanwhile) is dropped with a warning: the
    messages are then read again, which every consumer here absorbs (deterministic ids,
    idempotent writes). Fatal errors are raised.
    """
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if m.error() is None and topic is not None and partition is not None and offset is not None:
            last[(topic, partition)] = offset
    if not last:
        return True
    offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
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
    """Seek each partition back to the first message of ``msgs``, so the next poll reads them
    again: how a stage retries a batch whose work failed for a recoverable reason."""
    first: dict[tuple[str, int], int] = {}
    for m in msgs:
        topic, partition, offset = m.topic(), m.partition(), m.offset()
        if m.error() is None and topic is not None and partition is not None and offset is not None:
            first.setdefault((topic, partition), offset)
    for (topic, partition), offset in first.items():
        consumer.seek(TopicPartition(topic, partition, offset))


class Backoff:
    """Exponential back-off between retries of a recoverable failure (reset after a success)."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.next_s = first_s

    def failed(self) -> float:
        """The delay to wait now; doubles the next one."""
        delay, self.next_s = self.next_s, min(self.max_s, self.next_s * 2)
        return delay

    def succeeded(self) -> None:
        self.next_s = self.first_s


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


def run_until_shutdown(shutdown: "ShutdownFlag", step: Callable[[], int], idle_stop_s: float | None = None,
                       consumer: Consumer | None = None) -> None:
    """Call ``step`` (one batch; returns how many messages it held) until the flag is set,
    or until ``idle_stop_s`` passes without input once ``consumer`` is assigned (tests and
    one-shot replays)."""
    idle = IdleClock(idle_stop_s, consumer)
    while not shutdown.is_set():
        if step():
            idle.busy()
        elif idle.expired():
            break


@dataclass
class Decoded:
    """A consumed message together with its decoded event."""

    message: Message
    event: Event | None  # None for a tombstone


Transform = Callable[[list[Decoded]], Iterable[Event]]


@dataclass
class RunnerStats:
    consumed: int = 0
    produced: int = 0
    dlq: int = 0
    batches: int = 0
    dlq_by_topic: Counter[str] = field(default_factory=Counter)
    last_event_ts_ms: int = 0


class StreamRunner:
    """poll -> decode -> transform -> produce -> flush -> commit, until the flag is set.

    ``types`` maps each consumed (deployed) topic to its event class.
    ``transform`` is pure: it gets the decoded batch and returns the events to
    produce. ``on_batch_done`` (optional) runs after a commit, for side
    effects that must follow durability (metrics, notifications of a UI).
    """

    def __init__(self, settings: Settings, group_id: str, types: dict[str, type[Event]],
                 transform: Transform, *, batch_size: int = 1000, poll_timeout_s: float = 0.2,
                 shutdown: ShutdownFlag | None = None, producer: EventProducer | None = None,
                 allow_tombstones: bool = False, consumer_overrides: dict[str, Any] | None = None,
                 output_topic: Callable[[Event], str] | None = None, process: str | None = None,
                 lag_every_s: float = 5.0) -> None:
        self.settings = settings
        self.process = process or group_id
        self.lag_every_s = lag_every_s
        self._lag_at = 0.0
        self.types = types
        self.transform = transform
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.shutdown = shutdown or ShutdownFlag()
        self.allow_tombstones = allow_tombstones
        self.output_topic = output_topic
        self.producer = producer or EventProducer(settings)
        self.consumer = Consumer(consumer_config(settings, group_id, **(consumer_overrides or {})))
        self.stats = RunnerStats()
        self.consumer.subscribe(list(types))

    def _decode(self, msg: Message) -> Decoded | None:
        topic = msg.topic() or ""
        if msg.value() is None and self.allow_tombstones:
            return Decoded(msg, None)
        try:
            return Decoded(msg, decode(msg.value(), self.types[topic]))
        except InvalidEvent as exc:
            self.send_to_dlq(msg, str(exc))
            return None

    def send_to_dlq(self, msg: Message, reason: str) -> None:
        topic = msg.topic() or ""
        log.warning("dead-lettered %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), reason,
                    extra={"topic": topic, "partition": msg.partition(), "offset": msg.offset()})
        self.producer.produce_bytes(topic + DLQ_SUFFIX, msg.key(), msg.value(), dlq_headers(msg, reason))
        self.stats.dlq += 1
        self.stats.dlq_by_topic[topic] += 1
        obs.DLQ.labels(self.process, topic).inc()

    def run_once(self) -> int:
        """Process one batch; return how many messages it held."""
        msgs = self.consumer.consume(self.batch_size, self.poll_timeout_s)
        if time.monotonic() - self._lag_at > self.lag_every_s:
            self.report_lag()
        if not msgs:
            return 0
        started = time.perf_counter()
        batch: list[Decoded] = []
        for msg in msgs:
            if not has_data(msg):
                continue
            decoded = self._decode(msg)
            if decoded is not None:
                batch.append(decoded)
                if decoded.event is not None:
                    self.stats.last_event_ts_ms = max(self.stats.last_event_ts_ms, decoded.event.ts)
        outputs = list(self.transform(batch)) if batch else []
        for event in outputs:
            self.producer.produce(event, self.output_topic(event) if self.output_topic else None)
        self.producer.flush()
        self._commit(msgs)
        self.stats.consumed += len(msgs)
        self.stats.produced += len(outputs)
        self.stats.batches += 1
        for m in msgs:
            obs.EVENTS_IN.labels(self.process, m.topic() or "").inc()
        for event in outputs:
            obs.EVENTS_OUT.labels(self.process, topic_of(event)).inc()
        obs.BATCH_SECONDS.labels(self.process).observe(time.perf_counter() - started)
        if self.stats.last_event_ts_ms:
            obs.LAST_EVENT_TS.labels(self.process).set(self.stats.last_event_ts_ms / 1000)
        return len(msgs)

    def report_lag(self) -> None:
        """Update the consumer-lag gauge for the assigned partitions (cheap: cached watermarks)."""
        self._lag_at = time.monotonic()
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

    def _commit(self, msgs: list[Message]) -> None:
        commit_offsets(self.consumer, msgs, self.shutdown)

    def run(self, *, idle_stop_s: float | None = None) -> RunnerStats:
        """Loop until the shutdown flag is set (or ``idle_stop_s`` without input)."""
        try:
            run_until_shutdown(self.shutdown, self.run_once, idle_stop_s, self.consumer)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        try:
            self.producer.flush()
        finally:
            self.consumer.close()

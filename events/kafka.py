"""Kafka clients for every stage: topics, the idempotent producer, the manual-commit consumer's
settings, the shutdown flag and back-off.

The loop every consumer runs (decode -> step -> sink -> commit, the DLQ, idle stop) is
:mod:`events.pipeline`; reading a topic to its end is :mod:`events.pipeline_read`.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from events.contract import DLQ_SUFFIX, Event, encode, topic_of
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


RebalanceCallback = Callable[[Consumer, list[TopicPartition]], None]


def rebalance_callback(fn: RebalanceCallback) -> RebalanceCallback:
    """``fn`` as an ``on_assign``/``on_revoke``/``on_lost`` callback whose errors stay catchable.

    confluent-kafka keeps an exception raised in a rebalance callback and raises it again from the
    ``consume()``/``poll()`` that ran the callback. On Python 3.11 it raises again only the saved
    value. An error raised by a client call inside the callback (say a timed-out ``committed()``)
    is then not the ``KafkaException`` raised but its bare ``KafkaError``, which is no exception
    class. No ``except`` clause but a bare one catches it, so the process dies of a retriable
    error. The rule engine did, in the scale-out fault row, as partitions moved to it. Caught here
    and raised again from Python, the error leaves as the exception instance it was, and the
    process's own handling applies (``tests/events/test_kafka_callbacks.py``).
    """
    @functools.wraps(fn)
    def wrapper(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            fn(consumer, partitions)
        except KafkaException:
            raise  # caught, it is an instance now: re-raised, it keeps its class
    return wrapper


def subscribe(consumer: Consumer, topics: list[str], on_assign: RebalanceCallback, on_revoke: RebalanceCallback,
              on_lost: RebalanceCallback) -> None:
    """``consumer.subscribe`` with every rebalance callback wrapped by :func:`rebalance_callback`."""
    consumer.subscribe(topics, on_assign=rebalance_callback(on_assign), on_revoke=rebalance_callback(on_revoke),
                       on_lost=rebalance_callback(on_lost))


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


# names that moved to events.pipeline, still importable from here
_MOVED = frozenset({"StreamRunner", "Pipeline", "Decoded", "RunnerStats", "IdleClock", "commit_offsets", "rewind",
                    "has_data", "dlq_headers", "dead_letter"})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from events import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

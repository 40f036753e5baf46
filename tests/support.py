"""Helpers for tests that read what a stage wrote to Kafka."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer

from events.contract import Event, decode
from events.settings import Settings


def read_topic(settings: Settings, topic: str, *, expect: int, timeout_s: float = 30.0,
               group: str | None = None) -> list:
    """Read ``expect`` raw messages from ``topic`` (all partitions, from the start), or fail after ``timeout_s``."""
    consumer = Consumer({
        **settings.kafka_common(), "group.id": group or f"reader-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    consumer.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append(m)
    finally:
        consumer.close()
    assert len(out) >= expect, f"read {len(out)} of {expect} expected messages from {topic} in {timeout_s}s"
    return out


def read_events(settings: Settings, name: str, cls: type[Event], *, expect: int, timeout_s: float = 30.0) -> list:
    return [decode(m.value(), cls) for m in read_topic(settings, settings.topic(name), expect=expect, timeout_s=timeout_s)]


def topic_size(settings: Settings, topic: str) -> int:
    """Messages currently in ``topic`` (sum over partitions of high - low watermarks)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient

    parts = AdminClient(settings.kafka_common()).list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({**settings.kafka_common(), "group.id": f"size-{uuid.uuid4().hex}"})
    try:
        total = 0
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout_s: float = 20.0, what: str = "condition", interval_s: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)  # polling something outside this process, bounded by the deadline

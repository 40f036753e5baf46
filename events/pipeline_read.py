"""Reading a topic to its end: the one helper for loaders, followers, status pages and replays.

:func:`end_offsets` asks each partition's end (its high watermark) and waits out partition
leaders that are still moving in. :func:`read_to_end` reads every committed message of a
topic from its beginning to that end with a throw-away consumer (no group offsets), and
hands back where a follower should continue. :func:`reached` tells a group consumer that
replays a topic (a projection rebuild) when its positions have caught up with those ends.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Iterable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from events.kafka import consumer_config
from events.settings import Settings

__all__ = ["LEADER_MOVING", "end_offsets", "partition_ends", "reached", "read_to_end", "watermarks"]

# a topic just created (or a broker just restarted): its partition leaders are still moving in
LEADER_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                           KafkaError.UNKNOWN_TOPIC_OR_PART})


def watermarks(consumer: Consumer, topic: str, partition: int, settle_s: float = 15.0) -> tuple[int, int]:
    """A partition's (low, high) watermarks; waits up to ``settle_s`` for a leader that is moving in
    (a topic just created, a broker just restarted). May block for a few broker round trips."""
    deadline = time.monotonic() + settle_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            if exc.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # back off, then ask again once the leader is in place


def end_offsets(consumer: Consumer, topic: str, partitions: int, settle_s: float = 15.0) -> list[int]:
    """Each partition's end offset (index = partition number); waits up to ``settle_s`` for
    leaders that are moving in. May block for a few broker round trips per partition."""
    return [watermarks(consumer, topic, p, settle_s)[1] for p in range(partitions)]


def partition_ends(consumer: Consumer, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The end offset of every partition of ``topics`` (missing topics are left out)."""
    out: dict[tuple[str, int], int] = {}
    for topic in topics:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            continue
        for p, end in enumerate(end_offsets(consumer, topic, len(meta.partitions))):
            out[(topic, p)] = end
    return out


def reached(consumer: Consumer, ends: Mapping[tuple[str, int], int]) -> bool:
    """Whether ``consumer`` holds every partition of ``ends`` and has read each to its end
    (the consumer's position, not the last offset seen: compaction and transaction markers leave gaps)."""
    assigned = consumer.assignment()
    if {(tp.topic, tp.partition) for tp in assigned} < set(ends):
        return False
    positions = {(tp.topic, tp.partition): tp.offset for tp in consumer.position(assigned)}
    return all(end == 0 or positions.get(key, -1) >= end for key, end in ends.items())


def read_to_end(settings: Settings, topic: str, handle: Callable[[Message], None], timeout_s: float = 60.0,
                ends: dict[int, int] | None = None, only: Iterable[int] | None = None,
                group_prefix: str = "tickerbell-reader-") -> int:
    """Read every committed message of ``topic`` from the beginning to its current end; return the count.

    ``handle`` gets each data message in partition order. ``ends``, when given, receives each
    partition's end offset (where a follower continues); ``only`` limits the read to those
    partitions. Raises :class:`TimeoutError` if the end is not reached within ``timeout_s``.
    """
    consumer = Consumer(consumer_config(settings, f"{group_prefix}{uuid.uuid4().hex}",
                                        **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = list(meta.topics[topic].partitions) if topic in meta.topics else []
        if only is not None:
            wanted = set(only)
            partitions = [p for p in partitions if p in wanted]
        pending: set[int] = set()
        for p in partitions:
            low, high = watermarks(consumer, topic, p)
            if high > low:
                pending.add(p)
            elif ends is not None:
                ends[p] = high
        if not pending:
            return 0
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        count = 0
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.partition() in pending and ends is not None:
                            ends[msg.partition() or 0] = msg.offset() or 0
                        pending.discard(msg.partition() or 0)
                        continue
                    raise KafkaException(err)
                handle(msg)
                count += 1
        return count
    finally:
        consumer.close()

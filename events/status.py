"""What `make status` prints: per topic the end offsets and recent rate, per group the lag."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from events.kafka import admin_client, topic_specs
from events.settings import Settings


# a topic just created (or a broker just restarted): its partition leaders are still moving in
LEADER_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                           KafkaError.UNKNOWN_TOPIC_OR_PART})


def end_offsets(consumer: Consumer, topic: str, partitions: int, settle_s: float = 15.0) -> list[int]:
    """Each partition's end offset; waits up to ``settle_s`` for leaders that are moving in."""
    deadline = time.monotonic() + settle_s
    ends = []
    for p in range(partitions):
        while True:
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                break
            except KafkaException as exc:
                if exc.args[0].code() not in LEADER_MOVING or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # ask again once the leader is in place
        ends.append(high)
    return ends


def topic_totals(settings: Settings) -> dict[str, int]:
    """Messages ever written per topic (sum of end offsets)."""
    admin = admin_client(settings)
    meta = admin.list_topics(timeout=10).topics
    consumer = Consumer({**settings.kafka_common(), "group.id": "tickerbell-status", "enable.auto.commit": False})
    try:
        return {
            s.name: sum(end_offsets(consumer, s.name, len(meta[s.name].partitions)))
            for s in topic_specs(settings) if s.name in meta
        }
    finally:
        consumer.close()


def group_lag(settings: Settings) -> dict[str, int]:
    """Total lag per consumer group over the groups' committed offsets."""
    admin = admin_client(settings)
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid if not g.group_id.startswith("tickerbell-status")]
    lags: dict[str, int] = {}
    known = {s.name for s in topic_specs(settings)}
    if not groups:
        return lags
    consumer = Consumer({**settings.kafka_common(), "group.id": "tickerbell-status", "enable.auto.commit": False})
    try:
        from confluent_kafka import ConsumerGroupTopicPartitions

        for gid in groups:
            res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid].result(timeout=10)
            lag = 0
            ours = False
            for tp in res.topic_partitions:
                if tp.offset < 0 or tp.topic not in known:
                    continue
                ours = True
                _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)
                lag += max(0, high - tp.offset)
            if ours:
                lags[gid] = lag
    finally:
        consumer.close()
    return lags


def print_status(settings: Settings, sample_s: float = 2.0) -> None:
    before = topic_totals(settings)
    time.sleep(sample_s)  # a sampling interval for the rate, not synchronisation
    after = topic_totals(settings)
    print(f"{'topic':<24}{'messages':>14}{'per second':>14}")
    for name, total in after.items():
        rate = (total - before.get(name, 0)) / sample_s
        print(f"{name:<24}{total:>14,}{rate:>14,.1f}")
    lags = group_lag(settings)
    if lags:
        print(f"\n{'consumer group':<32}{'lag':>10}")
        for gid, lag in sorted(lags.items()):
            print(f"{gid:<32}{lag:>10,}")

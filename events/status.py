"""What `make status` prints: per topic the end offsets and recent rate, per group the lag."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from events.kafka import admin_client, topic_specs
from events.pipeline_read import end_offsets
from events.settings import Settings

__all__ = ["end_offsets", "group_lag", "print_status", "topic_totals"]


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

        meta = admin.list_topics(timeout=10).topics
        ends = {name: end_offsets(consumer, name, len(meta[name].partitions)) for name in known if name in meta}
        for gid in groups:
            res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid].result(timeout=10)
            lag = 0
            ours = False
            for tp in res.topic_partitions:
                if tp.offset < 0 or tp.topic not in ends:
                    continue
                ours = True
                lag += max(0, ends[tp.topic][tp.partition] - tp.offset)
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

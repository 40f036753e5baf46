"""The engine's changelog and partition handling: what it restores when partitions come and go.

The changelog is compacted and partitioned like the inputs: a symbol's state is written to
its input partition, beside that partition's marker (the input positions the state
corresponds to). On assignment the engine restores the partitions it gained (their states,
their marker) and replays their input from the marker up to the committed offsets with its
output suppressed; on revocation it drops what it lost; on a lost session it starts over.
"""

from __future__ import annotations

import gc
import logging

import msgspec
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from alerts.engine_state import Evaluator, decode_state
from events.kafka import TopicSpec
from events.pipeline_read import read_to_end
from events.settings import Settings

log = logging.getLogger("alerts.engine")

__all__ = ["MARKER_PREFIX", "PartitionsLost", "PartitionTracking", "changelog_spec", "changelog_topic", "marker_key"]

MARKER_PREFIX = b"\x00positions:"  # no symbol starts with NUL

marker_encoder = msgspec.json.Encoder()
_marker_decoder = msgspec.json.Decoder(list[tuple[str, int, int]])


def marker_key(partition: int) -> bytes:
    """The changelog key of input partition ``partition``'s marker (kept in that changelog partition)."""
    return MARKER_PREFIX + str(partition).encode()


def changelog_topic(settings: Settings) -> str:
    return settings.topic("alerts-engine.changelog")


def changelog_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(changelog_topic(settings), settings.kafka_partitions,
                     {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"})


class PartitionsLost(KafkaException):
    """The consumer's group session ended without a clean revocation: the engine starts over."""


class PartitionTracking:
    """The engine's partition bookkeeping and its assign/revoke/lost callbacks (a mixin of ``EngineRunner``)."""

    settings: Settings
    evaluator: Evaluator
    t_ticks: str
    t_metrics: str
    t_predictions: str
    t_changelog: str

    def _init_tracking(self) -> None:
        self._positions: dict[tuple[str, int], int] = {}     # next offset to process, per input partition
        self._marker: dict[tuple[str, int], int] = {}        # positions of the restored checkpoint
        self._owned: set[int] = set()                        # input partition numbers this instance holds
        self._partition_of: dict[str, int] = {}              # symbol -> its input (and changelog) partition
        self._replay_until: dict[tuple[str, int], int] = {}  # committed offsets the replay must reach
        self._unsaved: set[str] = set()                      # symbols changed since the last checkpoint
        self._checkpointed = False

    def _restored(self, records: int) -> None:
        """Count changelog records restored (the engine's stats)."""

    def _input_keys(self, partition: int) -> list[tuple[str, int]]:
        return [(t, partition) for t in (self.t_ticks, self.t_metrics, self.t_predictions)]

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Keep the state of partitions held on (nobody moved their offsets meanwhile), drop the
        ones lost, restore the ones gained: changelog partition, marker, replay up to the commit."""
        numbers = {tp.partition or 0 for tp in partitions}
        for p in self._owned - numbers:
            self._drop_partition(p)
        done: dict[tuple[str, int], int] = {}  # committed offset, else the partition's start
        for tp in consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in partitions], timeout=30):
            key = (tp.topic or "", tp.partition or 0)
            done[key] = tp.offset if tp.offset >= 0 else consumer.get_watermark_offsets(TopicPartition(*key),
                                                                                        timeout=10)[0]
        gained = set()
        for p in numbers:
            keys = [k for k in done if k[1] == p]
            if p in self._owned and all(self._positions.get(k, done[k]) == done[k] for k in keys) \
                    and not any(k in self._replay_until for k in keys):
                continue  # held across the rebalance and nobody else committed: the state is current
            if p in self._owned:
                self._drop_partition(p)
            gained.add(p)
        if gained:
            restored = read_to_end(self.settings, self.t_changelog, self._restore, only=gained,
                                   group_prefix="alerts-engine-loader-")
            self._restored(restored)
            self.evaluator.dirty.clear()
            replay = 0
            for key, offset in done.items():
                if key[1] not in gained:
                    continue
                base = self._marker.get(key, offset)
                self._positions[key] = base
                if offset > base:
                    self._replay_until[key] = offset
                    replay += offset - base
            log.info("partitions %s assigned: %d changelog records restored, %d messages to replay",
                     sorted(gained), restored, replay)
            # the next transaction writes their markers: a crash before the next periodic
            # checkpoint then replays from here, not from wherever the last marker was
            self._checkpointed = False
        self._owned = numbers
        for tp in partitions:
            key = (tp.topic or "", tp.partition or 0)
            if key in self._replay_until:
                tp.offset = self._positions[key]
        consumer.assign(partitions)
        # the rules and restored states are long-lived: keep the cyclic GC's full collections from
        # rescanning them on the hot path
        gc.collect()
        gc.freeze()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # called between batches (every batch's transaction is complete); the state is kept until
        # the next assignment says which partitions stay
        consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # the group went on without us (session timed out, e.g. a broker outage): others may
        # have moved on, and after a broker restart the producer can keep a dead coordinator
        # (librdkafka#5511: send_offsets_to_transaction then blocks for ever). Start over with
        # new clients, exactly as a restarted process would.
        for p in list(self._owned):
            self._drop_partition(p)
        self._owned = set()
        raise PartitionsLost(f"lost {len(partitions)} partitions with the group session")

    def _drop_partition(self, partition: int) -> None:
        gone = [s for s, p in self._partition_of.items() if p == partition]
        for symbol in gone:
            self.evaluator.symbols.pop(symbol, None)
            self._unsaved.discard(symbol)
            del self._partition_of[symbol]
        for table in (self._positions, self._marker, self._replay_until):
            for key in [k for k in table if k[1] == partition]:
                del table[key]

    def _restore(self, msg: Message) -> None:
        key = msg.key()
        if key is None:
            return
        partition = msg.partition() or 0
        if key.startswith(MARKER_PREFIX):
            value = msg.value()
            for k in self._input_keys(partition):
                self._marker.pop(k, None)
            if value:
                self._marker.update({(t, p): o for t, p, o in _marker_decoder.decode(value)})
            return
        if key.startswith(b"\x00"):
            return  # an older layout's single marker: its partition's replay starts at the commit
        symbol = key.decode()
        value = msg.value()
        if value is None:
            self.evaluator.symbols.pop(symbol, None)
            self._partition_of.pop(symbol, None)
        else:
            self.evaluator.restore(symbol, decode_state(value))
            self._partition_of[symbol] = partition

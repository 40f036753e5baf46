"""The engine process: ticks + metrics + predictions + rules -> ``alerts``, exactly once.

Every batch is one Kafka transaction holding the alerts it caused, any dead
letters and the consumed offsets (``send_offsets_to_transaction``). About
once a second (``checkpoint_interval_s``) the transaction also carries a
checkpoint on the compacted changelog topic: the state of every symbol that
changed since the previous one, and a marker with the input positions that
state corresponds to.

A kill -9 at any moment aborts the open transaction. The restart (same
``transactional.id``, which fences a zombie) restores the last checkpoint,
replays the input from the marker's positions up to the committed offsets
with its output suppressed (those alerts were committed before), and goes on
from there: the same alerts with the same ids, none lost, none twice.

Rules come from the compacted ``rules`` topic (read from the start at every
start, then followed); the engine never reads the database.

Scale-out: every instance joins one consumer group with the range assignor,
so an instance owns the same partition numbers of ``ticks``, ``metrics`` and
``predictions``; they are co-partitioned by symbol (every producer hashes the
key with murmur2, as Java clients and Spark do). The changelog is partitioned
the same way: a symbol's state is written to its input partition, with one
marker per partition. On assignment an instance restores just the partitions
it gained (state, marker, replay); on revocation it drops what it lost. Each
instance needs its own ``transactional.id`` (also its static group member id).
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from alerts.conditions import ConditionError
from alerts.engine_state import Evaluator, decode_state, encode_state
from events.contract import DLQ_SUFFIX, Bar, InvalidEvent, Prediction, Rule, Tick, decode, decoder_for, encode
from events.kafka import (IdleClock, ShutdownFlag, TopicSpec, consumer_config, dlq_headers, ensure_topics, has_data,
                          producer_config)
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["EngineRunner", "EngineStats", "changelog_topic"]


MARKER_PREFIX = b"\x00positions:"  # no symbol starts with NUL


def marker_key(partition: int) -> bytes:
    """The changelog key of input partition ``partition``'s marker (kept in that changelog partition)."""
    return MARKER_PREFIX + str(partition).encode()

_marker_encoder = msgspec.json.Encoder()
_marker_decoder = msgspec.json.Decoder(list[tuple[str, int, int]])


def changelog_topic(settings: Settings) -> str:
    return settings.topic("alerts-engine.changelog")


def changelog_spec(settings: Settings) -> TopicSpec:
    return TopicSpec(changelog_topic(settings), settings.kafka_partitions,
                     {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"})


class PartitionsLost(KafkaException):
    """The consumer's group session ended without a clean revocation: the engine starts over."""


@dataclass
class EngineStats:
    consumed: int = 0
    alerts: int = 0
    dlq: int = 0
    transactions: int = 0
    rules: int = 0
    state_records: int = 0
    restored_symbols: int = 0
    busy_s: float = 0.0        # evaluating (decode, rules, encode)
    commit_s: float = 0.0      # inside the Kafka transaction calls
    end_txn_s: float = 0.0     # of which commit_transaction (the broker's round trips)
    offsets_s: float = 0.0     # of which send_offsets_to_transaction
    max_batch_s: float = 0.0   # the longest batch, evaluation and transaction
    checkpoints: int = 0
    replayed: int = 0          # input re-evaluated after a restart, output suppressed
    started_at: float = field(default_factory=time.monotonic)


def read_to_end(settings: Settings, topic: str, handle: Callable[[Message], None], timeout_s: float = 60.0,
                ends: dict[int, int] | None = None, only: Iterable[int] | None = None) -> int:
    """Read every committed message of ``topic`` from the beginning to its current end; return the count.

    ``ends``, when given, receives each partition's end offset (where a follower continues);
    ``only`` limits the read to those partitions.
    """
    consumer = Consumer(consumer_config(settings, f"alerts-engine-loader-{uuid.uuid4().hex}",
                                        **{"enable.partition.eof": True}))
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = list(meta.topics[topic].partitions) if topic in meta.topics else []
        if only is not None:
            wanted = set(only)
            partitions = [p for p in partitions if p in wanted]
        pending: set[int] = set()
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
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
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s}s")
            for msg in consumer.consume(1000, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.partition() in pending and ends is not None:
                            ends[msg.partition() or 0] = msg.offset() or 0
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                handle(msg)
                count += 1
        return count
    finally:
        consumer.close()


class EngineRunner:
    """Consume-evaluate-produce in Kafka transactions, until the shutdown flag is set."""

    def __init__(self, settings: Settings, *, shutdown: ShutdownFlag | None = None,
                 group_id: str = "alerts-engine", transactional_id: str = "alerts-engine",
                 stale_after_s: int = 0, batch_size: int = 2000, poll_timeout_s: float = 0.005,
                 stale_check_interval_s: float = 1.0, checkpoint_interval_s: float = 1.0) -> None:
        self.settings = settings
        self.shutdown = shutdown or ShutdownFlag()
        self.group_id = group_id
        self.transactional_id = transactional_id
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.stale_check_interval_s = stale_check_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self._positions: dict[tuple[str, int], int] = {}     # next offset to process, per input partition
        self._marker: dict[tuple[str, int], int] = {}        # positions of the restored checkpoint
        self._owned: set[int] = set()                        # input partition numbers this instance holds
        self._partition_of: dict[str, int] = {}              # symbol -> its input (and changelog) partition
        self._replay_until: dict[tuple[str, int], int] = {}  # committed offsets the replay must reach
        self._unsaved: set[str] = set()                      # symbols changed since the last checkpoint
        self._next_checkpoint = 0.0
        self._checkpointed = False
        self._clean = True  # False once a batch failed part-way: then no final checkpoint
        self._txn_since: float | None = None  # when the open transaction began (watchdog)
        self.txn_stuck_s = 120.0
        self.evaluator = Evaluator(settings.bar_seconds, settings.public_url, stale_after_s)
        self.stats = EngineStats()
        self.t_ticks = settings.topic("ticks")
        self.t_metrics = settings.topic("metrics")
        self.t_predictions = settings.topic("predictions")
        self.t_rules = settings.topic("rules")
        self.t_alerts = settings.topic("alerts")
        self.t_changelog = changelog_topic(settings)
        self._pending_dlq: list[tuple[Message, str]] = []
        self.producer: Producer | None = None
        self.consumer: Consumer | None = None
        self.rules_consumer: Consumer | None = None
        self._tick_decoder = decoder_for(Tick)
        self._bar_decoder = decoder_for(Bar)
        self._prediction_decoder = decoder_for(Prediction)

    # --- start -------------------------------------------------------------------------

    def start(self) -> None:
        ensure_topics(self.settings, [changelog_spec(self.settings)])
        self.producer = Producer(producer_config(self.settings, **{
            "transactional.id": self.transactional_id, "linger.ms": 1, "transaction.timeout.ms": 60_000,
            # a transaction begun right after a commit can be refused while the coordinator completes the
            # previous one; the default 100 ms retry backoff was the engine's p99 latency: retry in ms
            "retry.backoff.ms": 5, "retry.backoff.max.ms": 100}))
        # fences any zombie with our id and aborts its open transaction, so the reads below see
        # exactly what was committed
        self.producer.init_transactions(30)
        rule_ends: dict[int, int] = {}
        self.stats.rules = read_to_end(self.settings, self.t_rules, self._apply_rule_message, ends=rule_ends)
        # follow the rules from exactly where the load stopped (no group: every engine reads them all)
        self.rules_consumer = Consumer(consumer_config(self.settings, f"alerts-engine-rules-{uuid.uuid4().hex}"))
        self.rules_consumer.assign([TopicPartition(self.t_rules, p, offset) for p, offset in rule_ends.items()])
        self.consumer = Consumer(consumer_config(self.settings, self.group_id, **{
            "group.instance.id": self.transactional_id,  # static membership: a restart takes over at once
            "fetch.wait.max.ms": 5,
            # range: each instance gets the same partition numbers of every input topic (co-partitioned)
            "partition.assignment.strategy": "range",
        }))
        # symbol states are restored per partition as partitions are assigned (_on_assign)
        self.consumer.subscribe([self.t_ticks, self.t_metrics, self.t_predictions],
                                on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("engine started: %d rules; waiting for partitions", len(self.evaluator.rules))

    # --- partitions come and go -----------------------------------------------------------

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
            restored = read_to_end(self.settings, self.t_changelog, self._restore, only=gained)
            self.stats.restored_symbols += restored
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

    def _apply_rule_message(self, msg: Message) -> None:
        value = msg.value()
        if value is None:
            key = msg.key() or b""
            if key.isdigit():
                self.evaluator.remove_rule(int(key))
            return
        try:
            rule = decode(value, Rule)
            self.evaluator.upsert_rule(rule)
        except (InvalidEvent, ConditionError, ValueError) as exc:
            self._pending_dlq.append((msg, f"{type(exc).__name__}: {exc}"))

    # --- loop --------------------------------------------------------------------------

    def _watch_transactions(self, stop: threading.Event) -> None:
        """Last resort against a transactional call that never returns (librdkafka#5456: it can
        ignore its timeout): nothing can interrupt it in-process, so exit and let the platform
        restart the engine from its last commit, rather than stay silently stuck."""
        while not stop.wait(5.0):
            since = self._txn_since
            if since is not None and time.monotonic() - since > self.txn_stuck_s:
                log.critical("a Kafka transaction has been blocked for %.0f s; exiting so that a restart "
                             "resumes from the last commit", time.monotonic() - since)
                logging.shutdown()
                os._exit(3)

    def run(self, *, idle_stop_s: float | None = None, max_messages: int | None = None) -> EngineStats:
        watchdog_stop = threading.Event()
        threading.Thread(target=self._watch_transactions, args=(watchdog_stop,), daemon=True,
                         name="txn-watchdog").start()
        try:
            if self.producer is None:
                self.start()
            next_stale = time.monotonic()
            idle = IdleClock(idle_stop_s, self.consumer)
            while not self.shutdown.is_set():
                now = time.monotonic()
                stale = now >= next_stale
                if stale:
                    next_stale = now + self.stale_check_interval_s
                if self.run_once(check_stale=stale):
                    idle.busy()
                elif idle.expired():
                    break
                if max_messages is not None and self.stats.consumed >= max_messages:
                    break
        except BaseException:
            # the state may now hold part of a batch whose alerts were never committed:
            # checkpointing it would lose them, so the restart replays from the last commit
            self._clean = False
            raise
        finally:
            watchdog_stop.set()
            self.close()
        return self.stats

    def _poll_rules(self) -> None:
        assert self.rules_consumer is not None
        for msg in self.rules_consumer.consume(500, 0):
            if msg.error() is None:
                self._apply_rule_message(msg)

    def run_once(self, check_stale: bool = False) -> int:
        """One batch in one transaction; return how many input messages it held."""
        assert self.consumer is not None and self.producer is not None
        self._poll_rules()
        msgs = self.consumer.consume(self.batch_size, self.poll_timeout_s)
        started = time.perf_counter()
        alerts: list[Any] = []
        offsets: dict[tuple[str, int], int] = {}
        positions = self._positions
        replay = self._replay_until
        ev = self.evaluator
        partition_of = self._partition_of
        t_ticks, t_metrics = self.t_ticks, self.t_metrics
        for msg in msgs:
            if not has_data(msg):
                continue
            topic = msg.topic() or ""
            tp = (topic, msg.partition() or 0)
            offset = msg.offset() or 0
            positions[tp] = offset + 1
            if replay and tp in replay:
                if offset >= replay[tp]:
                    del replay[tp]
                else:  # already evaluated before the crash, its output committed: rebuild state only
                    if offset + 1 >= replay[tp]:
                        del replay[tp]
                    self._replay(msg, topic, tp[1])
                    continue
            offsets[tp] = offset
            value = msg.value()
            try:
                if value is None:
                    raise InvalidEvent("empty message")
                if topic == t_ticks:
                    event: Any = self._tick_decoder.decode(value)
                elif topic == t_metrics:
                    event = self._bar_decoder.decode(value)
                else:
                    event = self._prediction_decoder.decode(value)
            except (InvalidEvent, ValueError) as exc:  # msgspec's errors are ValueErrors
                self._pending_dlq.append((msg, f"{type(exc).__name__}: {exc}"))
                continue
            partition_of[event.symbol] = tp[1]
            if topic == t_ticks:
                out = ev.on_tick(event)
            elif topic == t_metrics:
                out = ev.on_bar(event)
            else:
                out = ev.on_prediction(event)
            if out:
                alerts.extend(out)
        if check_stale and not replay:
            alerts.extend(ev.check_stale(int(time.time() * 1000)))
        if ev.dirty:
            self._unsaved |= ev.dirty
            ev.dirty.clear()
        # any moment is a consistent checkpoint: positions and state both cover what was processed
        checkpoint = not self._checkpointed or (bool(self._unsaved) and time.monotonic() >= self._next_checkpoint)
        if not offsets and not alerts and not self._pending_dlq and not checkpoint:
            return len(msgs)
        committing = time.perf_counter()
        self.stats.busy_s += committing - started
        self._commit(alerts, offsets, checkpoint)
        done = time.perf_counter()
        self.stats.commit_s += done - committing
        self.stats.max_batch_s = max(self.stats.max_batch_s, done - started)
        self.stats.consumed += len(msgs)
        self.stats.alerts += len(alerts)
        return len(msgs)

    def _replay(self, msg: Message, topic: str, partition: int) -> None:
        value = msg.value() or b""
        try:
            if topic == self.t_ticks:
                event: Any = self._tick_decoder.decode(value)
                self.evaluator.on_tick(event)
            elif topic == self.t_metrics:
                event = self._bar_decoder.decode(value)
                self.evaluator.on_bar(event)
            else:
                event = self._prediction_decoder.decode(value)
                self.evaluator.on_prediction(event)
            self._partition_of[event.symbol] = partition
        except (InvalidEvent, ValueError):
            pass  # dead-lettered before the crash
        self.stats.replayed += 1

    def _commit(self, alerts: list[Any], offsets: dict[tuple[str, int], int], checkpoint: bool) -> None:
        assert self.consumer is not None and self.producer is not None
        producer = self.producer
        self._txn_since = time.monotonic()
        producer.begin_transaction()
        for alert in alerts:
            self._produce(self.t_alerts, alert.key, encode(alert))
        saved = 0
        if checkpoint:
            symbols = self.evaluator.symbols
            for symbol in self._unsaved:
                state = symbols.get(symbol)
                partition = self._partition_of.get(symbol)
                if state is not None and partition is not None:
                    # beside its input partition's marker, whatever partitioner wrote the inputs
                    self._produce(self.t_changelog, symbol.encode(), encode_state(state), partition=partition)
                    saved += 1
            by_partition: dict[int, list[tuple[str, int, int]]] = {p: [] for p in self._owned}
            for (t, p), o in self._positions.items():
                by_partition.setdefault(p, []).append((t, p, o))
            for p, marker in by_partition.items():
                self._produce(self.t_changelog, marker_key(p), _marker_encoder.encode(marker), partition=p)
        for msg, reason in self._pending_dlq:
            topic = msg.topic() or ""
            log.warning("dead-lettered %s[%s]@%s: %s", topic, msg.partition(), msg.offset(), reason)
            self._produce(topic + DLQ_SUFFIX, msg.key(), msg.value(), list(dlq_headers(msg, reason)))
            self.stats.dlq += 1
        self._pending_dlq.clear()
        if offsets:
            sending = time.perf_counter()
            producer.send_offsets_to_transaction(
                [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()],
                self.consumer.consumer_group_metadata(), 30)
            self.stats.offsets_s += time.perf_counter() - sending
        # any failure here raises: the process dies and its restart resumes from the last commit
        ending = time.perf_counter()
        producer.commit_transaction(30)
        self._txn_since = None
        self.stats.end_txn_s += time.perf_counter() - ending
        self.stats.transactions += 1
        if checkpoint:
            self._unsaved.clear()
            self._checkpointed = True
            self._next_checkpoint = time.monotonic() + self.checkpoint_interval_s
            self.stats.checkpoints += 1
            self.stats.state_records += saved

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None = None, partition: int | None = None) -> None:
        assert self.producer is not None
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value=value, key=key, headers=headers)
                else:
                    self.producer.produce(topic, value=value, key=key, headers=headers, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def close(self) -> None:
        """A final checkpoint (so that a clean restart replays nothing), then close the clients."""
        if self.producer is not None and self.consumer is not None and self._unsaved and self._clean:
            try:
                self._commit([], {}, checkpoint=True)
            except KafkaException as exc:
                log.warning("final checkpoint failed (the restart will replay instead): %s", exc)
        for c in (self.consumer, self.rules_consumer):
            if c is not None:
                try:
                    c.close()
                except (KafkaException, RuntimeError):
                    pass
        self.consumer = self.rules_consumer = None
        gc.unfreeze()  # a runner started again in this process freezes its own state

"""The engine process: ticks + metrics + predictions + rules -> ``alerts``, exactly once.

Every batch is one Kafka transaction holding the alerts it caused, any dead
letters and the consumed offsets (``send_offsets_to_transaction``). Below a full
batch, a batch gathers input until ``transaction_interval_s`` after the previous
one was taken (``ALERTS_TRANSACTION_INTERVAL_MS``, 20 ms): a transaction costs the
broker about 1.6 ms of CPU whatever it holds, and one per 5 ms poll made a light
load cost the broker 0.29 cores at 1,000 ticks/s. Each input
partition is checkpointed about once a second (``checkpoint_interval_s``) on the
compacted changelog topic: the state of every symbol of that partition that
changed since its previous checkpoint, and the partition's marker with the input
positions that state corresponds to. The partitions take turns, one per
``checkpoint_interval_s / partitions``, so that no transaction carries every
symbol's state at once. Such a transaction took 6 times as long as a plain one
(about 32 ms against 5 at 10,000 ticks/s over 1,000 symbols), and every tick that
arrived meanwhile waited for it. A partition's states depend only on its own input,
so each partition's checkpoint is consistent on its own.

A kill -9 at any moment aborts the open transaction. The restart (same
``transactional.id``, which fences a zombie) restores the last checkpoint,
replays the input from the marker's positions up to the committed offsets
with its output suppressed (those alerts were committed before), and goes on
from there: the same alerts with the same ids, none lost, none twice.

It is the consumer pipeline (``events.pipeline``: poll -> decode -> step -> commit, the
DLQ, idle stop and shutdown by flag) with the transactional commit step
(``events.pipeline_txn``): decode by topic, evaluate (``alerts.engine_state``), then one
transaction. Partition assignment, the changelog and its restore are
``alerts.engine_changelog``.

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
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from alerts.conditions import ConditionError
from alerts.config import EngineSettings
from alerts.engine_changelog import (PartitionsLost, PartitionTracking, changelog_spec, changelog_topic, marker_encoder,
                                     marker_key)
from alerts.engine_state import Evaluator, encode_state
from events.contract import Bar, InvalidEvent, Prediction, Rule, Tick, decode, decoder_for, encode
from events.kafka import ShutdownFlag, consumer_config, ensure_topics, subscribe
from events.pipeline_loop import ConsumerLoop, dead_letter, has_data
from events.pipeline_read import read_to_end
from events.pipeline_txn import Transaction
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["EngineRunner", "EngineStats", "PartitionsLost", "changelog_topic", "read_to_end"]

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



#: the shipped ``ALERTS_TRANSACTION_INTERVAL_MS``: what an engine made in-process (a test) runs at too
TRANSACTION_INTERVAL_S = EngineSettings.transaction_interval_ms / 1000


class EngineRunner(PartitionTracking, ConsumerLoop):
    """Consume-evaluate-produce in Kafka transactions, until the shutdown flag is set."""

    def __init__(self, settings: Settings, *, shutdown: ShutdownFlag | None = None,
                 group_id: str = "alerts-engine", transactional_id: str = "alerts-engine",
                 stale_after_s: int = 0, batch_size: int = 2000, poll_timeout_s: float = 0.005,
                 stale_check_interval_s: float = 1.0, checkpoint_interval_s: float = 1.0,
                 transaction_interval_s: float = TRANSACTION_INTERVAL_S) -> None:
        self.settings = settings
        self.shutdown = shutdown or ShutdownFlag()
        self.group_id = group_id
        self.process = group_id
        self.transactional_id = transactional_id
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.stale_check_interval_s = stale_check_interval_s
        self.checkpoint_interval_s = checkpoint_interval_s
        self.transaction_interval_s = transaction_interval_s
        self._batch_taken_at = 0.0  # when the previous poll returned: the next gathers until the interval
        self._init_tracking()
        self._next_checkpoint = 0.0
        self._turn = 0  # the partitions take turns at the periodic checkpoint
        self._next_stale = 0.0
        self._clean = True  # False once a batch failed part-way: then no final checkpoint
        self.evaluator = Evaluator(settings.bar_seconds, settings.public_url, stale_after_s)
        self.stats = EngineStats()
        self.t_ticks = settings.topic("ticks")
        self.t_metrics = settings.topic("metrics")
        self.t_predictions = settings.topic("predictions")
        self.t_rules = settings.topic("rules")
        self.t_alerts = settings.topic("alerts")
        self.t_changelog = changelog_topic(settings)
        self._pending_dlq: list[tuple[Message, str]] = []
        self.txn: Transaction | None = None
        self.consumer: Consumer | None = None
        self.rules_consumer: Consumer | None = None
        self._tick_decoder = decoder_for(Tick)
        self._bar_decoder = decoder_for(Bar)
        self._prediction_decoder = decoder_for(Prediction)
        #: called inside the open transaction, after the batch's alerts were produced and before
        #: anything is committed (the tests' fault injection: hold there, then SIGKILL)
        self.on_produced: Callable[[list[Any]], None] | None = None

    def _restored(self, records: int) -> None:
        self.stats.restored_symbols += records

    def consumed_total(self) -> int:
        return self.stats.consumed

    def failed(self) -> None:
        # the state may now hold part of a batch whose alerts were never committed:
        # checkpointing it would lose them, so the restart replays from the last commit
        self._clean = False

    # --- start -------------------------------------------------------------------------

    def start(self) -> None:
        ensure_topics(self.settings, [changelog_spec(self.settings)])
        self.txn = Transaction(self.settings, self.transactional_id, **{
            "linger.ms": 1, "transaction.timeout.ms": 60_000,
            # a transaction begun right after a commit can be refused while the coordinator completes the
            # previous one; the default 100 ms retry backoff was the engine's p99 latency: retry in ms
            "retry.backoff.ms": 5, "retry.backoff.max.ms": 100})
        # fences any zombie with our id and aborts its open transaction, so the reads below see
        # exactly what was committed
        self.txn.init(30)
        rule_ends: dict[int, int] = {}
        self.stats.rules = read_to_end(self.settings, self.t_rules, self._apply_rule_message, ends=rule_ends,
                                       group_prefix="alerts-engine-loader-")
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
        subscribe(self.consumer, [self.t_ticks, self.t_metrics, self.t_predictions],
                  self._on_assign, self._on_revoke, self._on_lost)
        log.info("engine started: %d rules; waiting for partitions", len(self.evaluator.rules))

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

    def run(self, *, idle_stop_s: float | None = None, max_messages: int | None = None) -> EngineStats:
        """The pipeline's loop (``ConsumerLoop.run_loop``) under the transaction watchdog."""
        try:
            if self.txn is None:
                self.start()
        except BaseException:
            self.failed()
            self.close()
            raise
        assert self.txn is not None
        watchdog_stop = self.txn.start_watchdog()
        try:
            self._next_stale = time.monotonic()
            self.run_loop(idle_stop_s=idle_stop_s, max_messages=max_messages)
        finally:
            watchdog_stop.set()
        return self.stats

    def _poll_rules(self) -> None:
        assert self.rules_consumer is not None
        for msg in self.rules_consumer.consume(500, 0):
            if msg.error() is None:
                self._apply_rule_message(msg)

    def run_once(self, check_stale: bool | None = None) -> int:
        """One batch in one transaction; return how many input messages it held.

        ``check_stale``: whether to look for stale feeds now (default: once per ``stale_check_interval_s``).
        """
        assert self.consumer is not None and self.txn is not None
        if check_stale is None:
            now = time.monotonic()
            check_stale = now >= self._next_stale
            if check_stale:
                self._next_stale = now + self.stale_check_interval_s
        self._poll_rules()
        # below a full batch, gather input until transaction_interval_s after the previous batch was
        # taken: a full batch returns at once, so only a light load waits (for at most the interval)
        wait = max(self.poll_timeout_s, self._batch_taken_at + self.transaction_interval_s - time.monotonic())
        msgs = self.poll(wait)
        self._batch_taken_at = time.monotonic()
        started = time.perf_counter()
        alerts, offsets = self._decode_and_step(msgs, check_stale)
        # any moment is a consistent checkpoint: positions and state both cover what was processed
        checkpoint = self._checkpoint_due()
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

    def _checkpoint_due(self) -> frozenset[int]:
        """The input partitions whose checkpoint this batch's transaction carries: every one after an
        assignment (their markers are then written at once), else, once the turn is due, the next
        partition in turn that has unsaved state."""
        if not self._checkpointed:
            return frozenset(self._owned)
        if not self._unsaved or time.monotonic() < self._next_checkpoint:
            return frozenset()
        owned = sorted(self._owned)
        if not owned:
            return frozenset()
        changed = {self._partition_of.get(symbol) for symbol in self._unsaved}
        for _ in owned:
            partition = owned[self._turn % len(owned)]
            self._turn += 1
            if partition in changed:
                return frozenset((partition,))
        return frozenset((owned[self._turn % len(owned)],))  # only unsaveable symbols: a marker advances

    def _decode_and_step(self, msgs: list[Message], check_stale: bool) -> tuple[list[Any], dict[tuple[str, int], int]]:
        """Decode each message by its topic and evaluate it at once (the step: ``Evaluator``, no I/O);
        return the alerts raised and the offsets to commit. One pass in batch order, so replayed
        input (state only, output suppressed) and live input reach the state in the order they were
        consumed, as they did before the crash. Bad bytes wait for the DLQ of this batch's transaction."""
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
        return alerts, offsets

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

    def _commit(self, alerts: list[Any], offsets: dict[tuple[str, int], int], checkpoint: frozenset[int]) -> None:
        """The transactional commit step: alerts, the changelog checkpoint of the input partitions
        ``checkpoint`` (their changed states and their markers), dead letters, offsets."""
        assert self.consumer is not None and self.txn is not None
        txn = self.txn
        txn.begin()
        for alert in alerts:
            txn.produce(self.t_alerts, alert.key, encode(alert))
        if alerts and self.on_produced is not None:
            self.on_produced(alerts)
        saved = 0
        done: list[str] = []  # the symbols this checkpoint covers
        if checkpoint:
            symbols = self.evaluator.symbols
            owned = self._owned
            for symbol in self._unsaved:
                partition = self._partition_of.get(symbol)
                if partition is None or partition not in owned:
                    done.append(symbol)  # no partition of ours to keep it in
                elif partition in checkpoint:
                    state = symbols.get(symbol)
                    if state is not None:
                        # beside its input partition's marker, whatever partitioner wrote the inputs
                        txn.produce(self.t_changelog, symbol.encode(), encode_state(state), partition=partition)
                        saved += 1
                    done.append(symbol)
            by_partition: dict[int, list[tuple[str, int, int]]] = {p: [] for p in checkpoint}
            for (t, p), o in self._positions.items():
                if p in checkpoint:
                    by_partition[p].append((t, p, o))
            for p, marker in by_partition.items():
                txn.produce(self.t_changelog, marker_key(p), marker_encoder.encode(marker), partition=p)
        for msg, reason in self._pending_dlq:
            dead_letter(txn.produce_bytes, msg, reason, self.process)
            self.stats.dlq += 1
        self._pending_dlq.clear()
        if offsets:
            txn.send_offsets(offsets, self.consumer)
        # any failure here raises: the process dies and its restart resumes from the last commit
        txn.commit()
        self.stats.transactions = txn.transactions
        self.stats.offsets_s = txn.offsets_s
        self.stats.end_txn_s = txn.end_txn_s
        if checkpoint:
            self._unsaved.difference_update(done)
            if checkpoint >= self._owned:
                self._checkpointed = True
            self._next_checkpoint = time.monotonic() + self.checkpoint_interval_s / max(1, len(self._owned))
            self.stats.checkpoints += 1
            self.stats.state_records += saved

    def close(self) -> None:
        """A final checkpoint (so that a clean restart replays nothing), then close the clients."""
        if self.txn is not None and self.consumer is not None and self._unsaved and self._clean:
            try:
                self._commit([], {}, checkpoint=frozenset(self._owned))
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

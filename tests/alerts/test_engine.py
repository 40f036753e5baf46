"""The engine against the real broker: transactions, rules topic, DLQ, and kill -9 recovery."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from confluent_kafka import Consumer, TopicPartition

from alerts.engine import EngineRunner, changelog_topic, read_to_end
from alerts.engine_state import Evaluator
from events import contract
from events.kafka import EventProducer, ShutdownFlag, admin_client, ensure_topics, topic_specs
from events.settings import Settings
from tests.support import wait_for
from tests.alerts.helpers import T0, bar, rule, tick
from tests.alerts.procs import Proc, process_env
from tests.support import read_topic


@pytest.fixture
def engine_settings(kafka_settings: Settings) -> Iterator[Settings]:
    yield kafka_settings
    admin_client(kafka_settings).delete_topics([changelog_topic(kafka_settings)], operation_timeout=10)


def committed_alerts(settings: Settings) -> list[contract.Alert]:
    out: list[contract.Alert] = []
    read_to_end(settings, settings.topic("alerts"), lambda m: out.append(contract.decode(m.value(), contract.Alert)))
    return out


def expected_alerts(rules: list[contract.Rule], events: Sequence[contract.Event]) -> list[contract.Alert]:
    ev = Evaluator(bar_seconds=60, public_url="http://127.0.0.1:5000")
    for r in rules:
        ev.upsert_rule(r)
    out: list[contract.Alert] = []
    for e in events:
        if isinstance(e, contract.Tick):
            out += ev.on_tick(e)
        elif isinstance(e, contract.Bar):
            out += ev.on_bar(e)
    return out


def lag_is_zero(settings: Settings, group: str) -> bool:
    c = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        topic = settings.topic("ticks")
        parts = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        committed = c.committed(parts, timeout=10)
        for tp in committed:
            _, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        c.close()


def committed_offsets_exist(settings: Settings, group: str) -> bool:
    c = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        topic = settings.topic("ticks")
        parts = c.committed([TopicPartition(topic, p) for p in range(settings.kafka_partitions)], timeout=10)
        return any(tp.offset >= 0 for tp in parts)
    finally:
        c.close()


def test_ticks_and_bars_to_alerts_in_transactions(engine_settings: Settings) -> None:
    settings = engine_settings
    producer = EventProducer(settings)
    above = rule({"series": "price", "op": "crossing_up", "value": 150}, rule_id=1, channel_ids=[5])
    sma = rule({"series": "sma_5", "op": "greater_than", "other": "sma_20"}, rule_id=2, symbols=["AAPL", "MSFT"])
    doomed = rule({"series": "price", "op": "greater_than", "value": 1}, rule_id=3, symbols=["MSFT"])
    for r in (above, sma, doomed):
        producer.produce(r)
    producer.produce_bytes(settings.topic("rules"), b"4", b'{"type":"rule","broken":true}')
    producer.flush()
    flag = ShutdownFlag()
    runner = EngineRunner(settings, shutdown=flag, group_id=f"g-{uuid.uuid4().hex}",
                          transactional_id=f"tx-{uuid.uuid4().hex}")
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: runner.evaluator.rules.keys() == {1, 2, 3}, what="rules loaded")
        # a deleted rule (tombstone) stops at once
        producer.produce_bytes(settings.topic("rules"), b"3", None)
        producer.flush()
        wait_for(lambda: 3 not in runner.evaluator.rules, what="tombstone applied")
        events: list[contract.Event] = [tick(149, 0), tick(151, 1), tick(152, 2), tick(149, 3), tick(153, 4),
                                        tick(500, 5, "MSFT"), tick(10, 6, "TSLA"),
                                        bar(100, 0, "MSFT", sma_5=99.0, sma_20=100.0),
                                        bar(101, 1, "MSFT", sma_5=101.0, sma_20=100.0)]
        for e in events:
            producer.produce(e)
        producer.produce_bytes(settings.topic("ticks"), b"AAPL", b'{"type":"tick","price":-1}')
        producer.flush()
        expected = expected_alerts([above, sma], events)
        assert [(a.rule_id, a.state) for a in expected] == [
            (1, "firing"), (1, "resolved"), (1, "firing"), (2, "firing")]
        got = [contract.decode(m.value(), contract.Alert)
               for m in read_topic(settings, settings.topic("alerts"), expect=len(expected))]
        assert sorted(a.id for a in got) == sorted(a.id for a in expected)
        assert next(a for a in got if a.rule_id == 1).channel_ids == [5]
        dlq = read_topic(settings, settings.topic("ticks") + ".dlq", expect=1)
        assert b"price" in dict(dlq[0].headers())["dlq.error"]
        rules_dlq = read_topic(settings, settings.topic("rules") + ".dlq", expect=1)
        assert rules_dlq[0].key() == b"4"
    finally:
        flag.set()
        thread.join(20)
    assert runner.stats.transactions >= 1 and runner.stats.dlq == 2


def random_walk(symbols: list[str], n: int, seed: int = 7) -> list[contract.Tick]:
    rng = random.Random(seed)
    price = {s: 100.0 for s in symbols}
    out = []
    for i in range(n):
        s = symbols[i % len(symbols)]
        price[s] = max(90.0, min(110.0, price[s] + rng.choice((-1, 1)) * rng.random()))
        out.append(tick(round(price[s], 2), i, s, T0 + i * 50))
    return out


def crossing_rules(symbols: list[str]) -> list[contract.Rule]:
    """Three levels the random walk keeps crossing: many alerts, every one decided by state."""
    return [rule({"series": "price", "op": "crossing", "value": level}, rule_id=i + 1, symbols=symbols,
                 frequency="every_time") for i, level in enumerate((98.0, 100.0, 102.0))]


def crossing_scenario(settings: Settings, symbols: list[str], *, seed: int,
                      send: int) -> tuple[list[contract.Tick], list[contract.Alert], EventProducer]:
    """The crossing rules and the first ``send`` of 3,000 random-walk ticks on the broker; returns
    all the ticks, the alerts they must raise, and the producer for the rest."""
    rules = crossing_rules(symbols)
    ticks = random_walk(symbols, 3000, seed=seed)
    producer = EventProducer(settings)
    for r in rules:
        producer.produce(r)
    for t in ticks[:send]:
        producer.produce(t)
    producer.flush()
    return ticks, expected_alerts(rules, ticks), producer


@pytest.mark.parametrize("kill_after", [60, 700])  # before and after the first periodic checkpoint
def test_engine_killed_mid_stream_loses_and_duplicates_nothing(engine_settings: Settings, tmp_path: Path,
                                                               kill_after: int) -> None:
    settings = engine_settings
    symbols = ["AAPL", "MSFT", "NVDA", "AMZN"]
    rules = crossing_rules(symbols)
    rules.append(rule({"series": "price", "op": "moving_up", "value": 1.5, "window_s": 2}, rule_id=9,
                      symbols=symbols))
    ticks = random_walk(symbols, 4000)
    expected = expected_alerts(rules, ticks)
    assert len(expected) > 100
    producer = EventProducer(settings)
    for r in rules:
        producer.produce(r)
    producer.flush()
    group, txid = f"g-{uuid.uuid4().hex}", f"tx-{uuid.uuid4().hex}"
    env = process_env(settings, ALERTS_STALE_AFTER_S="0", ALERTS_ENGINE_GROUP=group, ALERTS_TRANSACTIONAL_ID=txid)
    log = tmp_path / "engine.log"
    engine = Proc(["engine"], env, log)
    producer.produce(tick(1.0, 0, "WARMUP"))  # nobody watches it: once it is committed, the engine is live
    producer.flush()
    wait_for(lambda: lag_is_zero(settings, group) and committed_offsets_exist(settings, group), timeout_s=60,
             what="the engine to join")

    def produce_ticks() -> None:
        p = EventProducer(settings)
        for i, t in enumerate(ticks):
            p.produce(t)
            if i % 100 == 99:
                p.flush()
                time.sleep(0.05)  # pacing the input stream (~2000 ticks/s), not synchronisation
        p.flush()

    feeder = threading.Thread(target=produce_ticks)
    feeder.start()
    try:
        # kill -9 once the engine has written part, but not all, of the output
        watcher = Consumer({**settings.kafka_common(), "group.id": f"w-{uuid.uuid4().hex}"})
        alerts_topic = settings.topic("alerts")

        def written() -> int:
            return sum(watcher.get_watermark_offsets(TopicPartition(alerts_topic, p), timeout=5)[1]
                       for p in range(settings.kafka_partitions))

        wait_for(lambda: written() >= kill_after, timeout_s=60, what="first alerts")
        engine.kill()
        watcher.close()
        seen_at_kill = len(committed_alerts(settings))
        feeder.join(60)
        engine = Proc(["engine"], env, log)
        wait_for(lambda: lag_is_zero(settings, group), timeout_s=90, what="the restarted engine to catch up")
    finally:
        engine.stop()
        feeder.join(5)
    got = committed_alerts(settings)
    ids = [a.id for a in got]
    replays = [line for line in engine.output().splitlines() if "replaying" in line]
    print(f"alerts committed at the kill: {seen_at_kill} of {len(expected)}; {replays}")
    assert seen_at_kill < len(expected), "the kill came after the whole stream: nothing was tested"
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate alerts"
    assert set(ids) == {a.id for a in expected}, engine.output()


def test_a_batch_failing_part_way_is_replayed_not_checkpointed(engine_settings: Settings) -> None:
    """An error in the middle of a batch (the broker fenced the engine, say) leaves the evaluator
    holding ticks whose alerts were never committed. Closing must not checkpoint that state: the
    next engine (in-process restart or a new process) replays from the last commit and emits them."""
    from confluent_kafka import KafkaError, KafkaException

    settings = engine_settings
    ticks, expected, _producer = crossing_scenario(settings, ["AAPL", "MSFT", "NVDA", "AMZN"], seed=11, send=3000)
    group, txid = f"g-{uuid.uuid4().hex}", f"tx-{uuid.uuid4().hex}"

    first = EngineRunner(settings, group_id=group, transactional_id=txid, batch_size=1000)
    evaluated = 0
    real_on_tick = first.evaluator.on_tick

    def on_tick_then_fail(t: contract.Tick) -> list[contract.Alert]:
        nonlocal evaluated
        evaluated += 1
        if evaluated == 1700:  # part-way through the second batch, after it raised alerts
            raise KafkaException(KafkaError(KafkaError._FATAL, "fenced (injected)", fatal=True))
        return real_on_tick(t)

    first.evaluator.on_tick = on_tick_then_fail  # type: ignore[method-assign,assignment]
    with pytest.raises(KafkaException):
        first.run()
    assert first.stats.transactions >= 1, "the failure came before any commit: nothing was tested"
    committed_before = len(committed_alerts(settings))
    assert 0 < committed_before < len(expected)

    second = EngineRunner(settings, group_id=group, transactional_id=txid)
    second.run(idle_stop_s=3)
    ids = [a.id for a in committed_alerts(settings)]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate alerts"
    assert set(ids) == {a.id for a in expected}


def test_two_engines_split_the_symbols_and_hand_them_over(engine_settings: Settings) -> None:
    """Scale-out: a second instance joins the group mid-stream; the partitions it gains come with
    their state (changelog partition + marker + replay), the first keeps the rest, and together
    they emit every expected alert exactly once."""
    settings = engine_settings
    ticks, expected, producer = crossing_scenario(settings, [f"SYM{i}" for i in range(12)], seed=5, send=750)
    group = f"g-{uuid.uuid4().hex}"
    flag = ShutdownFlag()
    # the first instance checkpoints only on assignment: what it hands over must be replayed
    first = EngineRunner(settings, shutdown=flag, group_id=group, transactional_id=f"tx-a-{uuid.uuid4().hex}",
                         checkpoint_interval_s=3600)
    second = EngineRunner(settings, shutdown=flag, group_id=group, transactional_id=f"tx-b-{uuid.uuid4().hex}")
    threads = [threading.Thread(target=first.run, daemon=True)]
    threads[0].start()
    try:
        # its one checkpoint (forced by the assignment) comes no later than these first 750
        wait_for(lambda: first.stats.consumed >= 750, timeout_s=60, what="the first engine to start")
        for t in ticks[750:1500]:
            producer.produce(t)
        producer.flush()
        wait_for(lambda: first.stats.consumed >= 1500 and lag_is_zero(settings, group), timeout_s=60,
                 what="the first engine to take the first half")
        assert first._owned == {0, 1}
        threads.append(threading.Thread(target=second.run, daemon=True))
        threads[1].start()
        wait_for(lambda: len(first._owned) == 1 and len(second._owned) == 1, timeout_s=60,
                 what="the group to rebalance over two instances")
        assert first._owned | second._owned == {0, 1}
        for t in ticks[1500:]:
            producer.produce(t)
        producer.flush()
        wait_for(lambda: lag_is_zero(settings, group), timeout_s=60, what="both engines to catch up")
    finally:
        flag.set()
        for th in threads:
            th.join(30)
    assert second.stats.restored_symbols > 0, "the handed-over partition came without its marker"
    assert second.stats.replayed > 0, "nothing was replayed: the handover was not tested"
    assert second.stats.consumed > 0 and first.stats.consumed > 1500
    held = {s for s in first.evaluator.symbols} & {s for s in second.evaluator.symbols}
    assert not held, f"both instances hold {held}"
    ids = [a.id for a in committed_alerts(settings)]
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} duplicate alerts"
    assert set(ids) == {a.id for a in expected}


def test_the_periodic_checkpoint_takes_one_partition_at_a_time_in_turn(base_settings: Settings) -> None:
    """After an assignment every partition's marker is written at once; after that each periodic
    checkpoint carries one partition's changed states and marker, the partitions in turn, one
    every interval/partitions, skipping a partition with nothing changed, until none is left."""
    runner = EngineRunner(base_settings, checkpoint_interval_s=3.0)
    runner._owned = {0, 1, 2}
    runner._partition_of = {"AAPL": 0, "MSFT": 1, "NVDA": 2, "AMZN": 2}
    runner._unsaved = {"AAPL", "NVDA", "AMZN"}
    assert runner._checkpoint_due() == {0, 1, 2}  # just assigned: every marker
    runner._checkpointed = True
    runner._next_checkpoint = time.monotonic() + 60
    assert runner._checkpoint_due() == frozenset()  # not due yet
    runner._next_checkpoint = 0.0
    turns = []
    for _ in range(4):
        due = runner._checkpoint_due()
        turns.append(sorted(due))
        runner._unsaved -= {s for s, p in runner._partition_of.items() if p in due}
    assert turns == [[0], [2], [], []], turns  # partition 1 had nothing changed; then nothing is left
    runner._unsaved = {"MSFT"}
    assert runner._checkpoint_due() == {1}


def test_a_light_load_is_gathered_into_one_transaction_per_interval(kafka_settings: Settings) -> None:
    """Below a full batch the engine gathers input for ``transaction_interval_s`` after the previous
    batch (each transaction costs the broker CPU whatever it holds): a trickle of ticks makes about
    one transaction per interval instead of one per poll, and every alert is still committed."""
    made: dict[float, int] = {}
    for interval in (0.1, 0.0):
        settings = replace(kafka_settings, kafka_topic_prefix=f"{kafka_settings.kafka_topic_prefix}{interval}.")
        ensure_topics(settings)
        producer = EventProducer(settings)
        crossing = rule({"series": "price", "op": "crossing", "value": 100}, rule_id=1)
        producer.produce(crossing)
        producer.flush()
        flag = ShutdownFlag()
        runner = EngineRunner(settings, shutdown=flag, group_id=f"g-{uuid.uuid4().hex}",
                              transactional_id=f"tx-{uuid.uuid4().hex}", transaction_interval_s=interval)
        thread = threading.Thread(target=runner.run, daemon=True)
        thread.start()
        ticks = [tick(99.0 if i % 2 else 101.0, i) for i in range(150)]  # each one crosses the level
        try:
            # partitions assigned and their markers written
            wait_for(lambda: runner.stats.transactions >= 1 and runner._owned, timeout_s=30, what="the engine up")
            before = runner.stats.transactions
            started = time.monotonic()
            for t in ticks:  # one tick every 5 ms
                producer.produce(t)
                producer.flush()
                time.sleep(0.005)  # pacing the offered load
            wait_for(lambda: runner.stats.consumed == len(ticks), timeout_s=30, what="the trickle consumed")
            made[interval] = runner.stats.transactions - before
            seconds = time.monotonic() - started
        finally:
            flag.set()
            thread.join(20)
        expected = {a.id for a in expected_alerts([crossing], ticks)}
        assert len(expected) > 250 and {a.id for a in committed_alerts(settings)} == expected
        admin_client(settings).delete_topics([s.name for s in topic_specs(settings)] + [changelog_topic(settings)],
                                             operation_timeout=10)
        if interval:
            assert made[interval] <= seconds / interval + 3, (made, seconds)
    assert made[0.0] >= 2 * made[0.1], made  # one per poll: several times as many

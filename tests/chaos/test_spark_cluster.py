"""The stream job on a Spark standalone cluster, one of its two workers SIGKILLed mid-batch.

The real job (the Procfile's ``stream`` command, ``SPARK_MASTER=spark://127.0.0.1:P``) reads a
known sequence of ticks (20 symbols, 1-second bars) on its own topics of the shared broker, with
its own checkpoint folder. A master and two workers of one core each run its executors
(``spark_cluster.py``). While ticks keep flowing, worker 1 is stepped (``SIGSTOP`` / look /
``SIGCONT``) until, frozen, it is caught in the middle of a micro-batch: the checkpoint shows
``offsets/N`` without ``commits/N`` over ticks, its executor of the job has tasks started and not
ended (its stderr), and the master lists it ALIVE with its core in use. Its whole process group
(worker, executor, Python workers) is SIGKILLed there: the driver loses the executor, the tasks
are run again on worker 0 and the job carries on there, its process never restarted after the
strike (a start-up that dies of Spark's fixed 10 s wait for a Python worker, on a loaded machine,
is started again on its checkpoint and the row says so). The worker is then started again and the
master gives the job a new executor on it.

Counted on the metrics topic (read_committed) by bar id: every bar the ticks owe (an independent
reference, ``tests/stream/reference.py``) is there with the reference's content; no id under two
contents, nothing unowed; copies of one id with the same content (Spark's Kafka sink is
at-least-once: a task killed after writing part of its output writes it again) are counted and
reported. Nothing is late or invalid (both DLQs stay empty): each event second is on the broker
before the next is produced, and a second's ticks lie within 400 ms, under the 500 ms lateness.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import signal
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from events.contract import Bar, Tick, decode
from events.contract_ids import tick_id
from events.kafka import EventProducer
from events.settings import Settings
from stream.job import on_this_machine
from tests.chaos import report, scenario
from tests.chaos.conftest import FAULTS, hold
from tests.chaos.probe import SparkBatch, spark_in_flight, step_until
from tests.chaos.spark_cluster import SparkCluster, Task, TaskLog
from tests.e2e.stack import Proc, Stack
from tests.stream.reference import bars_reference
from tests.support import topic_size, wait_for

FAULT = "SIGKILL Spark worker (1/2)"
SYMBOLS = [f"SW{k:02d}" for k in range(20)]
BASE_MS = 1_700_000_000_000
SEED = 15
PACE_S = 0.25          # wall seconds per event second: 4 bars per symbol and second
MAX_SECONDS = 1200     # the flow stops by itself after this many event seconds
LOADED_S = 300         # how long a JVM or the first micro-batch may take to start on a loaded machine
PYTHON_TIMEOUT = "Timed out while waiting for the Python worker to connect back"
WARM_SECONDS = 10      # produced before the job's first micro-batch, the rest flows once it is done
KILLED = 1             # the worker struck; worker 0 carries on
COMPARED = ("open", "high", "low", "close", "volume", "vwap", "change_pct", "sma_5", "sma_20", "ema_12", "ema_26",
            "macd", "rsi_14", "zscore_20", "volume_ratio")


def ticks_of_second(i: int) -> list[dict[str, Any]]:
    """The sequence's ticks of event second ``i``: 1-3 per symbol at offsets under 400 ms, not in
    event-time order within a bar; a function of ``i`` alone."""
    rng = random.Random(SEED * 1_000_003 + i)
    out = []
    for k, symbol in enumerate(SYMBOLS):
        for off in rng.sample(range(0, 400, 10), rng.randint(1, 3)):
            out.append({"symbol": symbol, "ts": BASE_MS + i * 1000 + off,
                        "price": round(100 + 5 * k + rng.uniform(-3, 3), 2),
                        "size": float(rng.choice([0, 1, 5, 10, 100]))})
    return out


class Flow(threading.Thread):
    """Produces the sequence second after second, paced, until halted; keeps what it produced."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True, name="tick-flow")
        self.halt = threading.Event()
        self.error: BaseException | None = None
        self._producer = EventProducer(settings)
        self._seq: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._ticks: list[dict[str, Any]] = []
        self._seconds = 0

    def produce_second(self) -> None:
        """The next event second's ticks, all on the broker before it returns: nothing is late."""
        second = ticks_of_second(self._seconds)
        for t in second:
            n = self._seq[t["symbol"]]
            self._seq[t["symbol"]] += 1
            self._producer.produce(Tick(id=tick_id("sw", t["symbol"], n), ts=t["ts"], symbol=t["symbol"],
                                        price=t["price"], size=t["size"], source="sw", seq=n))
        self._producer.flush(30)
        with self._lock:
            self._ticks += second
            self._seconds += 1

    def run(self) -> None:
        try:
            while not self.halt.is_set() and self._seconds < MAX_SECONDS:
                self.produce_second()
                self.halt.wait(PACE_S)  # the sequence's pace, a rate and not synchronisation
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc

    @property
    def seconds(self) -> int:
        with self._lock:
            return self._seconds

    def ticks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._ticks)


class MetricsReader:
    """Every message of the metrics topic, read_committed from the start as it grows:
    (bar id, value, broker timestamp in ms)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer({**settings.kafka_common(), "group.id": f"sw-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})
        self.topic = topic
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = sorted(parts)
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions])
        self.got: list[tuple[str, bytes, int]] = []
        self.ids: set[str] = set()

    def poll(self) -> int:
        for m in self.consumer.consume(2000, 0.2):
            if m.error() is None:
                value = m.value() or b""
                bar = decode(value, Bar)
                self.got.append((bar.id, value, m.timestamp()[1]))
                self.ids.add(bar.id)
        return len(self.got)

    def drain(self, timeout_s: float = 30) -> None:
        """Read up to the end of every partition as it is now."""
        ends = {p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)[1]
                for p in self.partitions}

        def at_end() -> bool:
            self.poll()
            pos = {tp.partition: tp.offset for tp in self.consumer.position(
                [TopicPartition(self.topic, p) for p in self.partitions])}
            return all(ends[p] == 0 or pos[p] >= ends[p] for p in self.partitions)

        wait_for(at_end, timeout_s, "the end of the metrics topic", interval_s=0)

    def close(self) -> None:
        self.consumer.close()


@dataclass(frozen=True)
class Caught:
    batch: SparkBatch
    running: dict[int, Task]    # on the worker's executor
    worker: dict[str, Any]      # the worker as the master listed it then
    steps: int


def catch_worker(cluster: SparkCluster, k: int, checkpoint: Path, ticks_topic: str, log: TaskLog,
                 timeout_s: float = 120, step_s: float = 0.02) -> Caught:
    """Step worker ``k``'s group until, frozen, it holds tasks of a micro-batch planned and not
    committed (over ticks); return with the group FROZEN: the caller kills it there. Frozen, its
    executor can neither end a task nor let the batch commit, so the look is exact."""

    def held() -> Caught | None:
        running = log.read()
        batch = spark_in_flight(checkpoint, ticks_topic) if running else None
        entry = cluster.worker_entry(k) if batch else None
        if batch and entry and entry.get("state") == "ALIVE" and int(entry.get("coresused", 0)) > 0:
            return Caught(batch, running, entry, 0)
        return None

    caught, steps = step_until(lambda sig: cluster.signal(k, sig), held, f"worker {k} mid-batch", timeout_s, step_s)
    return dataclasses.replace(caught, steps=steps)


def committed(checkpoint: Path) -> int:
    """The last micro-batch the checkpoint has committed (-1: none)."""
    d = checkpoint / "commits"
    ids = [int(p.name) for p in d.iterdir() if p.name.isdigit()] if d.is_dir() else []
    return max(ids, default=-1)


def count_bars(owed: set[str], got: list[tuple[str, bytes, int]], fault_at_ms: int) -> scenario.Tally:
    """The scenario's tally, by bar id: a bar id under two contents, or of no owed bar, is duplicated;
    more copies of one id and content are copies; before/after by the first copy's broker time."""
    contents: dict[str, set[bytes]] = defaultdict(set)
    first: dict[str, int] = {}
    for bar_id, value, ts_ms in got:
        contents[bar_id].add(value)
        first[bar_id] = min(first.get(bar_id, ts_ms), ts_ms)
    received = len(owed & contents.keys())
    duplicated = sum(len(v) > 1 or i not in owed for i, v in contents.items())
    before = sum(first[i] < fault_at_ms for i in owed & first.keys())
    return scenario.Tally(len(owed), received, len(owed) - received, duplicated, len(got) - len(contents),
                          before, received - before)


def assert_content(expected: dict[str, dict[str, Any]], got: list[tuple[str, bytes, int]]) -> None:
    seen: set[str] = set()
    for bar_id, value, _ in got:
        if bar_id in seen or bar_id not in expected:
            continue
        seen.add(bar_id)
        bar, exp = decode(value, Bar), expected[bar_id]
        assert (bar.symbol, bar.start_ms, bar.ts, bar.bar_seconds, bar.count) == (
            exp["symbol"], exp["start_ms"], exp["ts"], exp["bar_seconds"], exp["count"]), bar_id
        for name in COMPARED:
            want, have = exp[name], getattr(bar, name)
            assert (have is None) if want is None else have == pytest.approx(want, rel=1e-9, abs=1e-9), (
                f"{bar_id}.{name}: {have} != {want}")


def test_task_log_follows_the_tasks_an_executor_started_and_ended(tmp_path: Path) -> None:
    path = tmp_path / "stderr"
    log = TaskLog(path)
    assert log.read() == {} and log.started == 0   # no file yet
    path.write_text("26/12/02 06:30:00 INFO Executor: Running task 0.0 in stage 3.0 (TID 7)\n"
                    "26/12/02 06:30:00 INFO Executor: Running task 1.0 in stage 3.0 (TID 8)\n"
                    "26/12/02 06:30:01 INFO Executor: Finished task 0.0 in stage 3.0 (TID 7). 2 bytes result sent\n"
                    "26/12/02 06:30:01 INFO Executor: Running task 0.0 in stage 4.0 (TI")
    assert log.read() == {8: Task(8, 1, 0, 3, 0)} and log.started == 2
    with open(path, "a") as fh:  # the line being written, then the others end
        fh.write("D 9)\n26/12/02 06:30:02 INFO Executor: Executor killed task 1.0 in stage 3.0 (TID 8), reason: x\n")
    assert log.read() == {9: Task(9, 0, 0, 4, 0)} and log.started == 3
    with open(path, "a") as fh:
        fh.write("26/12/02 06:30:03 ERROR Executor: Exception in task 0.0 in stage 4.0 (TID 9)\n")
    assert log.read() == {} and log.started == 3


def test_a_master_on_loopback_runs_on_this_machine() -> None:
    assert on_this_machine("local[2]") and on_this_machine("local[*]")
    assert on_this_machine("spark://127.0.0.1:7077") and on_this_machine("spark://localhost:7077")
    assert not on_this_machine("spark://spark-master.internal:7077")
    assert not on_this_machine("spark://10.1.2.3:7077")


def test_the_sequence_is_known_and_never_late() -> None:
    """A second's ticks span under the 500 ms lateness: whatever a micro-batch cuts, none is late."""
    assert ticks_of_second(42) == ticks_of_second(42) and ticks_of_second(42) != ticks_of_second(43)
    for i in range(50):
        second = ticks_of_second(i)
        assert {t["symbol"] for t in second} == set(SYMBOLS)
        assert all(BASE_MS + i * 1000 <= t["ts"] < BASE_MS + i * 1000 + 400 for t in second)
    owed = bars_reference([t for i in range(30) for t in ticks_of_second(i)], 1)
    assert len(owed) == 30 * len(SYMBOLS)
    assert sum(b["rsi_14"] is not None for b in owed.values()) == (30 - 14) * len(SYMBOLS)


def test_count_bars_by_id() -> None:
    owed = {"a", "b", "c"}
    got = [("a", b"1", 10), ("a", b"1", 30), ("b", b"2", 20), ("b", b"2x", 25), ("z", b"9", 40)]
    t = count_bars(owed, got, fault_at_ms=15)
    assert (t.owed, t.received, t.lost, t.duplicated, t.copies, t.before, t.after) == (3, 2, 1, 2, 2, 1, 1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SparkCluster]:
    c = SparkCluster(tmp_path / "spark")
    try:
        c.start(LOADED_S)
        yield c
    finally:
        c.stop()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # minutes on a quiet machine; the upper bounds are for a loaded one
def test_standalone_worker_killed_mid_batch(cluster: SparkCluster, kafka_settings: Settings, tmp_path: Path) -> None:
    name = f"sw-{uuid.uuid4().hex[:8]}"
    checkpoint = tmp_path / "checkpoint"
    ticks_topic, metrics_topic = kafka_settings.topic("ticks"), kafka_settings.topic("metrics")
    stack = Stack.create(tmp_path / "stack", kafka_settings.kafka_topic_prefix,
                         KAFKA_BOOTSTRAP_SERVERS=kafka_settings.kafka_bootstrap_servers,
                         SPARK_MASTER=cluster.url, BAR_SECONDS="1", STREAM_LATENESS_MS="500",
                         STREAM_TRIGGER_MS="200", STREAM_SHARDS="4", STREAM_SHUFFLE_PARTITIONS="2",
                         STREAM_CHECKPOINT=str(checkpoint), STREAM_QUERY_NAME=name)
    reader = MetricsReader(kafka_settings, metrics_topic)
    flow = Flow(kafka_settings)
    jobs: list[tuple[Proc, int]] = []   # each start of the job and where its part of the log begins
    restarts: list[str] = []

    def running(what: str) -> bool:
        """False, once it has checked the job is alive and the flow well (for ``running(..) or cond``)."""
        job = jobs[-1][0]
        assert job.alive(), f"the stream job exited while waiting for {what}:\n{job.tail(80)}"
        assert flow.error is None, flow.error
        return False

    def job_log() -> str:
        job, offset = jobs[-1]
        with open(job.log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def start_job() -> tuple[str, list[list[dict[str, Any]]]]:
        """Start the job and wait for its first bars; the application's id and each worker's executors.
        A start that dies of the driver's fixed 10 s wait for a Python worker to connect back (a loaded
        machine) is started again on its checkpoint, twice at most, and reported in the row."""
        for attempt in range(3):
            offset = jobs[-1][0].log.stat().st_size if jobs else 0
            jobs.append((stack.start("stream", METRICS_PORT="0"), offset))
            try:
                app = wait_for(lambda: running("the job at the master") or cluster.app(name), LOADED_S,
                               "the stream job registered at the master", interval_s=0.5)
                app_id = str(app["id"])
                execs = wait_for(lambda: running("executors") or (
                    [cluster.executors(k, app_id) for k in range(2)]
                    if all(cluster.executors(k, app_id) for k in range(2)) else None),
                    LOADED_S, "an executor of the job on each worker", interval_s=0.5)
                wait_for(lambda: running("the first bars") or reader.poll(), 2 * LOADED_S, "the job's first bars",
                         interval_s=0.5)
                return app_id, execs
            except AssertionError:
                if attempt == 2 or jobs[-1][0].alive() or PYTHON_TIMEOUT not in job_log():
                    raise
                restarts.append("stream (start-up: Python worker timed out)")
        raise AssertionError("not reached")

    try:
        for _ in range(WARM_SECONDS):  # the first micro-batch (the slowest by far) gets these only
            flow.produce_second()
        app_id, execs = start_job()
        job = jobs[-1][0]
        victim, survivor = int(execs[KILLED][0]["id"]), int(execs[1 - KILLED][0]["id"])
        flow.start()
        log, survivor_log = cluster.task_log(KILLED, app_id, victim), cluster.task_log(1 - KILLED, app_id, survivor)
        # in its stride: a batch with state before it committed, the worker's executor has run tasks
        wait_for(lambda: running("a second batch") or (committed(checkpoint) >= 1 and log.read() is not None
                                                       and log.started > 0), LOADED_S, "a second batch committed")

        caught = catch_worker(cluster, KILLED, checkpoint, ticks_topic, log)
        strike_at_ms = int(time.time() * 1000)
        cluster.kill(KILLED)
        busy = (f"micro-batch {caught.batch.batch} over {caught.batch.ticks} ticks planned, not committed; "
                f"its executor {victim} running {', '.join(map(str, caught.running.values()))}; the master "
                f"listing the worker ALIVE with {caught.worker['coresused']} core in use (caught in {caught.steps} "
                "steps)")

        # the master drops the worker; the job keeps its other executor and goes on
        wait_for(lambda: cluster.worker_state(KILLED) == "DEAD", 60, "the master to mark the worker DEAD")
        wait_for(lambda: running("batches after the kill") or committed(checkpoint) >= caught.batch.batch + 2, LOADED_S,
                 "two micro-batches committed after the strike", interval_s=0.5)
        assert cluster.app(name) is not None, "the job's application ended at the master"
        assert [int(e["id"]) for e in cluster.executors(1 - KILLED, app_id)] == [survivor]
        driver_log = job_log()
        assert re.search(rf"[Ll]ost (?:an )?executor {victim}\b", driver_log), job.tail(60)

        # the killed tasks run again on the survivor: the same partition of the same stage, later
        def retried() -> list[Task]:
            survivor_log.read()
            return [t for t in survivor_log.tasks for c in caught.running.values()
                    if (t.stage, t.partition) == (c.stage, c.partition) and t.tid > c.tid]
        again = wait_for(lambda: running("the retried tasks") or retried(), LOADED_S,
                         f"the tasks of executor {victim} retried on executor {survivor}")
        busy += f"; run again on executor {survivor} as {', '.join(map(str, again))}"

        # the worker again: the master gives the job a new executor there, which runs tasks
        cluster.restart(KILLED, LOADED_S)
        fresh = wait_for(lambda: running("a new executor") or cluster.executors(KILLED, app_id), LOADED_S,
                         "a new executor of the job on the restarted worker", interval_s=0.5)
        fresh_log = cluster.task_log(KILLED, app_id, int(fresh[0]["id"]))
        wait_for(lambda: running("the new executor's tasks") or (fresh_log.read() is not None and fresh_log.started),
                 LOADED_S, "tasks on the new executor", interval_s=0.5)
        until = flow.seconds + 8
        wait_for(lambda: running("the flow") or flow.seconds >= until, 60, "more ticks after the restart")
        flow.halt.set()
        flow.join(60)
        assert flow.error is None, flow.error
        ticks = flow.ticks()
        # far ahead in event time: the watermark passes every bar of the sequence
        closer = EventProducer(kafka_settings)
        closer.produce(Tick(id=tick_id("sw", "ZZZ", 0), ts=BASE_MS + (flow.seconds + 5) * 1000, symbol="ZZZ",
                            price=1.0, size=1.0, source="sw", seq=0))
        closer.flush(30)
        expected = bars_reference(ticks, 1)
        assert len(expected) == len(SYMBOLS) * flow.seconds
        wait_for(lambda: running("the last bars") or (reader.poll() >= 0 and set(expected) <= reader.ids), LOADED_S,
                 f"all {len(expected)} bars on the metrics topic", interval_s=0.5)
        assert stack.stop("stream", 120) == 0, job.tail()
    finally:
        flow.halt.set()
        stack.stop_all()
    reader.drain()
    reader.close()

    tally = count_bars(set(expected), reader.got, strike_at_ms)
    assert_content(expected, reader.got)
    assert tally.received == tally.owed and tally.lost == 0, tally
    assert tally.duplicated == 0, tally
    assert tally.before > 0 and tally.after > 0, f"the strike did not split the sequence: {tally}"
    assert topic_size(kafka_settings, ticks_topic + ".dlq") == 0, "late or invalid ticks"
    row = scenario.Row.of(FAULT, "Spark worker (1 of 2, standalone)",
                          "mid-batch: offsets written, commit not; its executor running tasks of it", busy,
                          "metrics topic (bars)", tally, ", ".join(restarts))
    print(json.dumps(row.doc(), indent=1))
    if FAULT in FAULTS:
        report.save([row])

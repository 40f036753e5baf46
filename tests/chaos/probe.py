"""Looking at a process from outside, and catching it at its worst moment.

A target process is stepped: ``SIGSTOP``, look at what it has left in the world (the broker's
read-uncommitted and read-committed ends, a consumer group's committed offsets, the Celery queue
in Redis, Spark's checkpoint folder), ``SIGCONT`` for a few milliseconds, again. While it is frozen
the world it acts on stands still, so a look that finds it inside its critical section (a Kafka
transaction holding produced alerts, Celery tasks enqueued for offsets not yet committed, a
micro-batch planned and not committed) is exact; the ``SIGKILL`` then lands there. No production
module has a test hook: everything here reads what any operator could read.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import redis
from confluent_kafka import Consumer, TopicPartition

from tests.e2e.stack import Stack

T = TypeVar("T")


def step_until(send: Callable[[int], None], look: Callable[[], T | None], what: str, timeout_s: float = 60.0,
               step_s: float = 0.003) -> tuple[T, int]:
    """Step a target (``send(signal)`` stops or continues it) until ``look()``, called while it is
    frozen, returns a proof; return the proof and how many steps it took. The target is left FROZEN:
    the caller kills it there."""
    deadline = time.monotonic() + timeout_s
    steps = 0
    while time.monotonic() < deadline:
        send(signal.SIGSTOP)
        steps += 1
        try:
            proof = look()
        except BaseException:
            send(signal.SIGCONT)
            raise
        if proof is not None:
            return proof, steps
        send(signal.SIGCONT)
        threading.Event().wait(step_s)
    raise AssertionError(f"{what} was not caught in its critical section within {timeout_s} s ({steps} steps)")


def catch(stack: Stack, name: str, look: Callable[[], T | None], timeout_s: float = 60.0,
          step_s: float = 0.003) -> tuple[T, int]:
    """:func:`step_until` for the stack's process ``name``."""
    return step_until(lambda sig: stack.signal(name, sig), look, name, timeout_s, step_s)


class KafkaLook:
    """Ends and committed offsets of a topic on the chaos broker, as read_uncommitted and
    read_committed consumers see them (a read_committed end is the last stable offset)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        base = {"bootstrap.servers": bootstrap, "enable.auto.commit": False}
        self._ru = Consumer({**base, "group.id": f"probe-{uuid.uuid4().hex[:8]}", "isolation.level": "read_uncommitted"})
        self._rc = Consumer({**base, "group.id": f"probe-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed"})
        self._groups: dict[str, Consumer] = {}

    def partitions(self, topic: str) -> list[int]:
        meta = self._ru.list_topics(topic, timeout=10).topics[topic]
        return sorted(meta.partitions)

    def ends(self, topic: str, committed: bool) -> dict[int, int]:
        c = self._rc if committed else self._ru
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1]
                for p in self.partitions(topic)}

    def open_transaction(self, topic: str) -> dict[int, int]:
        """Partition -> messages written past the last stable offset (an open transaction's)."""
        ru, rc = self.ends(topic, committed=False), self.ends(topic, committed=True)
        return {p: ru[p] - rc[p] for p in ru if ru[p] > rc[p]}

    def group_committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets, partitions it has committed on only (an OffsetFetch: the
        probe never joins the group)."""
        c = self._groups.get(group)
        if c is None:
            c = self._groups[group] = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                                                "enable.auto.commit": False})
        got = c.committed([TopicPartition(topic, p) for p in self.partitions(topic)], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}

    def read(self, topic: str, committed: bool, start: dict[int, int] | None = None,
             end: dict[int, int] | None = None) -> list[bytes]:
        """Every message value of ``topic`` from ``start`` (default the beginning) up to ``end``
        (default the current end as this isolation level sees it)."""
        end = end if end is not None else self.ends(topic, committed)
        start = start or {}
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:8]}",
                      "enable.auto.commit": False,
                      "isolation.level": "read_committed" if committed else "read_uncommitted"})
        want = {p: e for p, e in end.items() if e > start.get(p, 0)}
        out: list[bytes] = []
        try:
            c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in want])
            deadline = time.monotonic() + 30
            while want and time.monotonic() < deadline:
                for msg in c.consume(500, 0.5):
                    if msg.error():
                        continue
                    p, off = msg.partition() or 0, msg.offset() or 0
                    if p in want and off < want[p]:
                        out.append(msg.value() or b"")
                    # a read_committed consumer skips aborted records and markers: it is done
                    # with a partition once its position passes the end
                    if p in want and off + 1 >= want[p]:
                        del want[p]
                for p in list(want):
                    pos = c.position([TopicPartition(topic, p)])[0].offset
                    if pos >= want[p]:
                        del want[p]
        finally:
            c.close()
        return out

    def close(self) -> None:
        for c in (self._ru, self._rc, *self._groups.values()):
            c.close()


def queued_deliveries(redis_url: str, queue: str) -> list[int]:
    """Delivery ids of the ``alerts.deliver`` tasks waiting in the Celery queue (a Redis list)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    return deliveries_of(raw)


def pushed_deliveries(chunk: bytes) -> list[int]:
    """Delivery ids of the ``alerts.deliver`` tasks in the ``LPUSH`` commands of a RESP chunk a
    client sent (what a worker blocked in ``BRPOP`` takes off the list at once, so ``LRANGE`` may
    never see it)."""
    bulks = []
    for m in re.finditer(rb"\$(\d+)\r\n", chunk):   # each bulk string: its length, then its bytes
        body = chunk[m.end():m.end() + int(m.group(1))]
        if body.startswith(b"{"):
            bulks.append(body)
    return deliveries_of(bulks)


def deliveries_of(raw: list[bytes]) -> list[int]:
    out = []
    for item in raw:
        headers = json.loads(item).get("headers", {})
        m = re.search(r"\d+", str(headers.get("argsrepr", "")))
        if headers.get("task") == "alerts.deliver" and m:
            out.append(int(m.group()))
    return out


@dataclass(frozen=True)
class SparkBatch:
    """A micro-batch Spark planned (``offsets/N``) and has not committed (no ``commits/N``)."""

    batch: int
    ticks: int   # ticks offsets the batch covers


def spark_in_flight(checkpoint: Path, ticks_topic: str) -> SparkBatch | None:
    """The batch in flight in a Structured Streaming checkpoint, if it holds any ticks."""

    def ids(folder: str) -> list[int]:
        d = checkpoint / folder
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []

    planned, committed = ids("offsets"), ids("commits")
    if not planned or (committed and committed[-1] >= planned[-1]):
        return None
    n = planned[-1]

    def ticks_end(batch: int) -> dict[str, int]:
        try:
            lines = (checkpoint / "offsets" / str(batch)).read_text().splitlines()
        except OSError:
            return {}
        for line in lines[2:]:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and ticks_topic in doc:
                return {str(k): int(v) for k, v in doc[ticks_topic].items()}
        return {}

    end, start = ticks_end(n), ticks_end(n - 1) if n > 0 else {}
    span = sum(max(0, v - start.get(k, 0)) for k, v in end.items())
    return SparkBatch(n, span) if span > 0 else None

"""The pipeline's exactly-once commit step: a batch's outputs and its consumed offsets in one Kafka transaction.

    begin -> produce the outputs (and dead letters, and any changelog records)
          -> send_offsets_to_transaction -> commit_transaction

Either all of it becomes visible to ``read_committed`` readers, or none: a kill -9 at any
moment leaves an open transaction that the restart (same ``transactional.id``, which fences
a zombie) aborts, and the input is read again from the last committed offsets. Any failure
inside a transaction raises: the caller's process starts over from the last commit rather
than try to mend a transaction in an unknown state.

A transactional call can ignore its own timeout (librdkafka#5456); :meth:`Transaction.watch`
is the last resort: a thread that exits the process when one has been open for too long.

One such hang can follow any broker loss in a cluster, and is headed off here: librdkafka#5511
(open, in librdkafka 2.16). A broker that leaves the metadata is decommissioned, but the
producer's cache can keep it as the consumer group's coordinator. ``send_offsets_to_transaction``
then waits for that broker to come up, which it never does. The wait is re-checked only when some
broker connection of the producer goes up or down. On a quiet cluster none does, so a batch was
blocked for minutes (the three-broker fault row: 125 s, then the watchdog's exit).
``connections.max.idle.ms`` (``IDLE_CLOSE_MS``) makes librdkafka close a connection left idle that
long. A producer blocked in that wait sends nothing, so within ``IDLE_CLOSE_MS`` one of its
connections closes. The check runs again, finds the cached coordinator down, asks for the new one,
and the call goes on. ``tests/chaos/test_coordinator_loss.py`` fails without it. The cost: a
connection idle that long is opened again on its next use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Mapping

from confluent_kafka import Consumer, Producer, TopicPartition

from events.kafka import producer_config
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["IDLE_CLOSE_MS", "Transaction"]

#: idle broker connections of a transactional producer are closed after this (librdkafka#5511, above)
IDLE_CLOSE_MS = 10_000


class Transaction:
    """A transactional producer and the calls of one transaction per batch, timed.

    ``offsets_s`` and ``end_txn_s`` add up the seconds spent in ``send_offsets_to_transaction``
    and ``commit_transaction``; ``transactions`` counts the committed ones.
    """

    def __init__(self, settings: Settings, transactional_id: str, **overrides: Any) -> None:
        self.producer = Producer(producer_config(settings, **{
            "transactional.id": transactional_id, "connections.max.idle.ms": IDLE_CLOSE_MS, **overrides}))
        self.since: float | None = None  # when the open transaction began (watchdog)
        self.stuck_s = 120.0
        self.transactions = 0
        self.offsets_s = 0.0
        self.end_txn_s = 0.0

    def init(self, timeout_s: float = 30.0) -> None:
        """Fence any zombie with our id and abort its open transaction (blocks up to ``timeout_s``)."""
        self.producer.init_transactions(timeout_s)

    def begin(self) -> None:
        self.since = time.monotonic()
        self.producer.begin_transaction()

    def produce(self, topic: str, key: bytes | None, value: bytes | None,
                headers: list[tuple[str, str | bytes | None]] | None = None, partition: int | None = None) -> None:
        """Queue one record in the open transaction; serves delivery reports while the queue is full."""
        while True:
            try:
                if partition is None:
                    self.producer.produce(topic, value=value, key=key, headers=headers)
                else:
                    self.producer.produce(topic, value=value, key=key, headers=headers, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)

    def produce_bytes(self, topic: str, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, str | bytes | None]]) -> None:
        """:meth:`produce` in the shape of ``events.pipeline_loop.dead_letter``'s producer."""
        self.produce(topic, key, value, headers)

    def send_offsets(self, offsets: Mapping[tuple[str, int], int], consumer: Consumer) -> None:
        """Add the positions after ``offsets`` (last processed offset per partition) to the transaction."""
        sending = time.perf_counter()
        self.producer.send_offsets_to_transaction(
            [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], consumer.consumer_group_metadata(), 30)
        self.offsets_s += time.perf_counter() - sending

    def commit(self) -> None:
        ending = time.perf_counter()
        self.producer.commit_transaction(30)
        self.since = None
        self.end_txn_s += time.perf_counter() - ending
        self.transactions += 1

    def watch(self, stop: threading.Event) -> None:
        """Until ``stop``: exit the process (status 3) once a transaction has been open ``stuck_s``,
        so that the platform restarts it from its last commit rather than it stay silently stuck.
        Nothing can interrupt a blocked librdkafka call in-process."""
        while not stop.wait(5.0):
            since = self.since
            if since is not None and time.monotonic() - since > self.stuck_s:
                log.critical("a Kafka transaction has been blocked for %.0f s; exiting so that a restart "
                             "resumes from the last commit", time.monotonic() - since)
                logging.shutdown()
                os._exit(3)

    def start_watchdog(self) -> threading.Event:
        """Run :meth:`watch` in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.watch, args=(stop,), daemon=True, name="txn-watchdog").start()
        return stop

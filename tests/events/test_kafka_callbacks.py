"""A client error inside a rebalance callback must leave ``consume()`` as a catchable ``KafkaException``.

The engine's ``on_assign`` reads committed offsets and the changelog. One of those calls timed out in
the scale-out fault row, and the engine died. confluent-kafka on Python 3.11 raised the saved error
again as its bare ``KafkaError``, which no ``except KafkaException`` (nor ``except Exception``) catches.
``events.kafka.rebalance_callback`` keeps it an exception. The first test pins the client's
behaviour that the wrapper exists for: once a release fixes it, that test fails, and the wrapper can go.
"""

from __future__ import annotations

import sys
import uuid
from typing import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from events.kafka import consumer_config, rebalance_callback
from events.settings import Settings
from tests.events.test_pipeline import produce_ticks

Callback = Callable[[Consumer, list[TopicPartition]], None]


def timed_out_lookup(consumer: Consumer, partitions: list[TopicPartition]) -> None:
    """A client call that fails inside the callback: the committed offsets with no time to answer."""
    consumer.committed(partitions, timeout=0.000001)


def consume_until_raised(settings: Settings, on_assign: Callback) -> BaseException | object:
    """Subscribe with ``on_assign`` and consume until the callback's error comes out; return it."""
    consumer = Consumer(consumer_config(settings, f"cb-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([settings.topic("ticks")], on_assign=on_assign)
    try:
        for _ in range(30):
            consumer.consume(10, 1.0)
    except KafkaException as exc:  # what a process's own handling catches
        return exc
    except:  # noqa: E722 - the only clause that catches what is not an exception class
        return sys.exc_info()[1]
    finally:
        consumer.close()
    pytest.fail("the callback never ran: no partition was assigned in 30 s")


def test_unwrapped_the_error_of_a_client_call_in_the_callback_escapes_except_exception(
        kafka_settings: Settings) -> None:
    produce_ticks(kafka_settings, range(1, 3), ())
    raised = consume_until_raised(kafka_settings, timed_out_lookup)
    assert isinstance(raised, KafkaError) and not isinstance(raised, BaseException), type(raised)


def test_wrapped_it_leaves_consume_as_the_kafka_exception_it_was(kafka_settings: Settings) -> None:
    produce_ticks(kafka_settings, range(1, 3), ())
    raised = consume_until_raised(kafka_settings, rebalance_callback(timed_out_lookup))
    assert isinstance(raised, KafkaException), type(raised)
    assert raised.args[0].code() == KafkaError._TIMED_OUT, raised

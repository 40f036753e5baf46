"""Handing work to the notification workers from another process (the web app), by task name.

The web app never sends a notification itself: a test message or a confirmation
mail would hold a request (and a web worker) for as long as the receiver likes.
It writes what to do (a delivery row, a channel) and enqueues its id here.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["Sender", "task_sender"]

Sender = Callable[[str, list[Any]], None]


def task_sender(redis_url: str, queue: str) -> Sender:
    """``send(task_name, args)`` onto ``queue`` on Redis. Raises kombu's or redis's errors when the
    broker is away (after one quick retry), so the caller can say so."""
    from celery import Celery

    app = Celery("tickerbell-web", broker=redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True,
                    broker_connection_timeout=2.0,
                    task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2})

    def send(name: str, args: list[Any]) -> None:
        app.send_task(name, args=args, queue=queue)

    return send

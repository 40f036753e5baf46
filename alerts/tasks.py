"""Celery tasks: deliver one delivery id (alerts and test messages alike); mail an address its
confirmation link; mail a sign-up's address (its link, or a notice that it has an account); sweep due
deliveries (beat).

Shared tasks: they run in the app :func:`alerts.celery_app.create_celery` made (the current one).
A process that enqueues one without having made an app (``python -m web admin resend``) gets the
app of its environment on first use (:func:`alerts.celery_app.edge_app`)."""

from __future__ import annotations

import logging

from typing import Any, Callable, cast

from celery import Task, shared_task

from alerts import account_mail, notify
from alerts.celery_app import edge_app, runtime

log = logging.getLogger(__name__)


class AppTask(Task):  # type: ignore[misc]
    """Enqueues through the app of :func:`~alerts.celery_app.create_celery`, or, in a process that made
    none (Celery's unconfigured default app is current), through the app of its environment."""

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(self.app, "tickerbell"):
            return edge_app().tasks[self.name].apply_async(*args, **kwargs)
        return super().apply_async(*args, **kwargs)


def task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``shared_task`` with :class:`AppTask` (typed: the decorated function becomes a Celery task)."""
    return cast(Callable[[Callable[..., Any]], Any], shared_task(base=AppTask, **options))


@task(name="alerts.deliver", acks_late=True, ignore_result=True)
def deliver(delivery_id: int) -> str:
    """Send one delivery if it is still pending and due; schedule a short retry with a countdown."""
    rt = runtime()
    result = notify.deliver(rt.sessions, int(delivery_id), rt.settings, rt.config)
    if result.status == "retry" and result.retry_in_s is not None and result.retry_in_s <= rt.config.countdown_max_s:
        deliver.apply_async((delivery_id,), countdown=result.retry_in_s, queue=rt.config.queue)
    return result.status


CONFIRMATION_WINDOW_S = 600  # one confirmation mail per address per 10 minutes, whoever asks


def first_in_window(redis_url: str, prefix: str, window_s: int = CONFIRMATION_WINDOW_S,  # type: ignore[no-untyped-def]
                    what: str = "confirm-mail"):
    """``check(address)``: True for the first call per address in ``window_s`` (a Redis SET NX EX, so
    across workers); the key holds a hash, not the address. ``what`` names the kind of mail: each
    kind has its own window."""
    import hashlib

    import redis

    client = redis.Redis.from_url(redis_url)

    def check(address: str) -> bool:
        digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()
        return bool(client.set(f"tickerbell:{prefix}{what}:{digest}", b"1", nx=True, ex=window_s))

    return check


@task(name="alerts.confirm_channel", ignore_result=True)
def confirm_channel(channel_id: int) -> str:
    """Mail an unconfirmed email channel its confirmation link (throttled per address)."""
    rt = runtime()
    throttle = first_in_window(rt.settings.redis_url, rt.settings.kafka_topic_prefix)
    return account_mail.send_confirmation(rt.sessions, int(channel_id), rt.settings, rt.config, throttle)


@task(name="alerts.signup_mail", ignore_result=True)
def signup_mail(user_id: int, kind: str) -> str:
    """Mail a sign-up's address: its confirmation link (``link``) or, when the address already has an
    account, a notice to its owner (``taken``); each kind at most once per address per 10 minutes."""
    rt = runtime()
    throttle = first_in_window(rt.settings.redis_url, rt.settings.kafka_topic_prefix, what=f"signup-{kind}")
    return account_mail.send_signup_mail(rt.sessions, int(user_id), str(kind), rt.settings, rt.config, throttle)


@task(name="alerts.sweep", ignore_result=True)
def sweep() -> int:
    """Enqueue every due delivery (retries whose time has come, leases of dead workers)."""
    rt = runtime()
    ids = notify.sweep(rt.sessions, rt.config)
    for delivery_id in ids:
        deliver.apply_async((delivery_id,), queue=rt.config.queue)
    if ids:
        log.info("sweep: enqueued %d due deliveries", len(ids))
    return len(ids)

"""The Celery app of the notification workers (``python -m alerts worker``).

Configured once from the environment (the edge): :func:`make_celery` takes
the settings and the :class:`~alerts.retry.NotifyConfig`. Tasks take
delivery ids, never objects; they are idempotent through the delivery row
(see :mod:`alerts.notify`), which is what makes ``acks_late`` safe. Retries
live in ``deliveries.next_attempt_at`` and a beat task sweeps them every
``sweep_interval_s``: no task waits in Redis longer than ``countdown_max_s``,
far below the Redis transport's visibility timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from alerts.retry import NotifyConfig, load_notify_config
from events.settings import Settings, load_settings

__all__ = ["Runtime", "app", "make_celery", "runtime"]


@dataclass
class Runtime:
    settings: Settings
    config: NotifyConfig
    _sessions: Any = field(default=None, repr=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:  # created lazily, after any fork
            from events.db import session_factory

            self._sessions = session_factory(self.settings)
        return self._sessions


def make_celery(settings: Settings, config: NotifyConfig) -> Celery:
    celery = Celery("tickerbell-alerts", broker=settings.redis_url, include=["alerts.tasks"])
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=config.queue,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        beat_schedule={
            "sweep-deliveries": {"task": "alerts.sweep", "schedule": config.sweep_interval_s,
                                 "options": {"queue": config.queue, "expires": config.sweep_interval_s * 2}},
        },
        beat_max_loop_interval=max(0.1, min(5.0, config.sweep_interval_s)),
        beat_schedule_filename=str(settings.var_dir / f"celerybeat-{config.queue}"),
    )
    celery.tickerbell = Runtime(settings, config)  # type: ignore[attr-defined]
    return celery


app = make_celery(load_settings(), load_notify_config())


def runtime() -> Runtime:
    return app.tickerbell  # type: ignore[attr-defined,no-any-return]

"""The Celery app of the notification workers (``python -m alerts worker``), made by a factory.

:func:`create_celery` takes the settings and the :class:`~alerts.retry.NotifyConfig` (Flask's
Celery pattern: the app is built at the edge from what the process read once, and becomes the
current app, so the shared tasks of :mod:`alerts.tasks` run in it). Tasks take delivery ids,
never objects; they are idempotent through the delivery row (see :mod:`alerts.notify`), which is
what makes ``acks_late`` safe. Retries live in ``deliveries.next_attempt_at`` and a beat task
sweeps them every ``sweep_interval_s``: no task waits in Redis longer than ``countdown_max_s``,
far below the Redis transport's visibility timeout.

``celery -A alerts.celery_app worker`` works too: the module's ``app`` is made on first access,
from the environment, by the same factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery, current_app
from sqlalchemy.orm import Session, sessionmaker

from alerts.retry import NotifyConfig
from events.settings import Settings

__all__ = ["Runtime", "celery_config", "create_celery", "edge_app", "runtime"]


@dataclass
class Runtime:
    """What the tasks of an app need: the settings it was made with and a session factory."""

    settings: Settings
    config: NotifyConfig
    _sessions: sessionmaker[Session] | None = field(default=None, repr=False)

    @property
    def sessions(self) -> sessionmaker[Session]:
        if self._sessions is None:  # created lazily, after any fork
            from events.db import session_factory

            self._sessions = session_factory(self.settings)
        return self._sessions


def celery_config(settings: Settings, config: NotifyConfig) -> dict[str, Any]:
    """The Celery configuration of the notification workers."""
    return dict(
        broker_url=settings.redis_url,
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


def create_celery(settings: Settings, config: NotifyConfig) -> Celery:
    """A configured app with the tasks of :mod:`alerts.tasks`, made the current and default app."""
    celery = Celery("tickerbell-alerts", include=["alerts.tasks"], set_as_current=True)
    celery.conf.update(celery_config(settings, config))
    celery.tickerbell = Runtime(settings, config)
    celery.set_default()
    import alerts.tasks  # noqa: F401  (registers the shared tasks with this app now, not at worker start)

    return celery


_edge: Celery | None = None


def edge_app() -> Celery:
    """The app of a process that did not make one (``celery -A alerts.celery_app``, or a command that
    imports a task to enqueue it): made once, on first use, from this process's environment."""
    global _edge
    if _edge is None:
        from alerts.retry import load_notify_config
        from events.settings import load_settings

        _edge = create_celery(load_settings(), load_notify_config())
    return _edge


def runtime() -> Runtime:
    """The :class:`Runtime` of the current app (a task's)."""
    app = current_app._get_current_object()
    if not hasattr(app, "tickerbell"):
        app = edge_app()
    return app.tickerbell  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name == "app":  # `celery -A alerts.celery_app worker`
        return edge_app()
    raise AttributeError(name)

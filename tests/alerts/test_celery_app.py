"""The notification workers' Celery app comes from a factory: nothing is read from the environment at import."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import redis

from alerts.celery_app import create_celery, runtime
from alerts.retry import NotifyConfig
from events.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_is_made_from_the_settings_given(base_settings: Settings) -> None:
    config = NotifyConfig(queue=f"q-{uuid.uuid4().hex[:8]}", sweep_interval_s=2.0)
    app = create_celery(base_settings, config)
    assert app.conf.broker_url == base_settings.redis_url and app.conf.task_default_queue == config.queue
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    sweep = app.conf.beat_schedule["sweep-deliveries"]
    assert sweep["schedule"] == 2.0 and sweep["options"]["queue"] == config.queue
    assert {"alerts.deliver", "alerts.confirm_channel", "alerts.signup_mail", "alerts.sweep"} <= set(app.tasks)
    assert runtime().settings is base_settings and runtime().config is config  # the tasks see this app's


def test_a_task_is_enqueued_on_the_apps_broker_and_queue(base_settings: Settings) -> None:
    from alerts.tasks import deliver

    queue = f"q-{uuid.uuid4().hex[:8]}"
    create_celery(replace(base_settings), NotifyConfig(queue=queue))
    deliver.apply_async((42,), queue=queue)
    r = redis.Redis.from_url(base_settings.redis_url)
    try:
        assert r.llen(queue) == 1
        assert json.loads(r.lindex(queue, 0))["headers"]["task"] == "alerts.deliver"  # type: ignore[arg-type]
    finally:
        r.delete(queue)


def test_importing_the_app_and_tasks_reads_no_environment(tmp_path: Path) -> None:
    """A bad variable does not break the import (the factory is called at the edge, which reports it)."""
    code = "import alerts.celery_app, alerts.tasks; print('imported')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ALERTS_DIGEST": "ture",
                              "TICKERBELL_VAR": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.strip() == "imported", out.stderr[-2000:]

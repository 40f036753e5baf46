"""The Procfile names only commands that exist and start: each process answers its health
check within a bounded time, then stops cleanly on SIGTERM (as Heroku and honcho stop them)."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

import pytest

from events.kafka import ensure_topics
from events.settings import Settings
from tests.e2e.stack import Stack, procfile, wait_for, free_port

LONG_RUNNING = sorted(set(procfile()) - {"release"})
# the Spark job starts a JVM and the predictor loads TensorFlow: they get longer
START_S = {"stream": 150, "predict": 150}


def test_procfile_has_every_process_of_the_design() -> None:
    expected = {"release", "web", "bridge", "projector", "ingest", "stream", "predict", "alerts", "dispatch",
                "worker", "relay", "retrain"}
    assert expected <= set(procfile())


@pytest.fixture
def stack(tmp_path: Path, kafka_settings: Settings):  # type: ignore[no-untyped-def]
    s = Stack.create(tmp_path, kafka_settings.kafka_topic_prefix, SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    release = s.run(procfile()["release"])
    assert release.returncode == 0, release.stderr
    yield s
    s.stop_all()


def healthy(stack: Stack, name: str) -> bool:
    proc = stack.procs[name]
    assert proc.alive(), f"{name} exited with {proc.popen.returncode}:\n{proc.tail()}"  # type: ignore[union-attr]
    if name == "web":
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.env['PORT']}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    if name == "mail":
        import smtplib

        try:
            host, port = proc.env["SMTP_URL"].rsplit("/", 1)[-1].split(":")
            with smtplib.SMTP(host, int(port), timeout=2) as smtp:
                return smtp.noop()[0] == 250
        except OSError:
            return False
    if name == "retrain" and "ready" not in proc.tail(200):
        return False  # its Celery worker (beat embedded) is up, not just the /metrics it serves first
    return "tickerbell_" in stack.metrics(name) or "process_cpu_seconds_total" in stack.metrics(name)


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_process_starts_answers_health_and_stops_on_sigterm(stack: Stack, name: str) -> None:
    extra = {"PORT": str(free_port())} if name == "web" else {}
    if name == "retrain":  # scheduled (a day apart: nothing trains here) on a queue of its own
        extra = {"PREDICT_RETRAIN_INTERVAL_S": "86400", "PREDICT_RETRAIN_QUEUE": f"tbtest-{uuid.uuid4().hex[:10]}"}
    stack.start(name, **extra)
    wait_for(lambda: healthy(stack, name), START_S.get(name, 60), f"{name} to answer its health check")
    code = stack.stop(name, timeout_s=45)
    assert code == 0, f"{name} exited with {code} on SIGTERM:\n{stack.procs[name].tail()}"

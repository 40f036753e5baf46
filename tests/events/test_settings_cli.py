"""Every process kind stops at start on a bad variable: exit 2, one line naming it, no traceback, no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-Zq8vN3xL7mR2"  # appears in a bad value: it must not appear in what the process prints


@pytest.mark.parametrize(("argv", "name", "value"), [
    (["events", "banner"], "ALLOW_PRIVATE_WEBHOOKS", "ture"),                 # a mistyped boolean
    (["events", "relay"], "KAFKA_PARTITIONS", "six"),
    (["alerts", "engine"], "ALERTS_STALE_AFTER_S", "2m"),                     # was a traceback
    (["alerts", "dispatch"], "ALERTS_DIGEST", "yes"),                         # was silently false
    (["alerts", "worker"], "ALERTS_RETRY_SCHEDULE", "5,soon"),
    (["ingest", "--count", "1"], "REDIS_URL", f"http://u:{SECRET}@127.0.0.1:6379"),  # a bad URL with a password
    (["stream"], "STREAM_SHARDS", "many"),
    (["predict", "list"], "PREDICT_RETRAIN_MARGIN", "lots"),
    (["predict.tasks"], "PREDICT_RETRAIN_INTERVAL_S", "daily"),
    (["web", "projector"], "DATABASE_URL", f"mysql://u:{SECRET}@127.0.0.1/tb"),
    (["web", "serve"], "SMTP_URL", f"mailto://u:{SECRET}@127.0.0.1"),         # a secret: its value never shows
    (["web", "bridge"], "TICKERBELL_ENV", "prod"),
])
def test_a_bad_variable_stops_the_process_with_one_line(argv: list[str], name: str, value: str,
                                                        tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TICKERBELL_VAR": str(tmp_path), name: value}
    out = subprocess.run([sys.executable, "-m", *argv], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=180)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {name}: "), out.stderr[-2000:]
    assert "Traceback" not in out.stderr and SECRET not in out.stderr + out.stdout


def test_a_weak_secret_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "TICKERBELL_VAR": str(tmp_path),
           "TICKERBELL_ENV": "production", "SECRET_KEY": "hunter2"}
    out = subprocess.run([sys.executable, "-m", "alerts", "worker"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 2 and out.stderr.startswith("configuration error: SECRET_KEY cannot sign sessions")
    assert len(out.stderr.strip().splitlines()) == 1 and "hunter2" not in out.stderr

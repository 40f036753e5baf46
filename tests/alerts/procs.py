"""Running the alerts processes as real subprocesses (so tests can SIGKILL them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from events.settings import Settings, weak_secret_key

ROOT = Path(__file__).resolve().parents[2]


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ALERTS_"))}
    env.update({
        "PYTHONPATH": str(ROOT),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": settings.kafka_topic_prefix,
        "KAFKA_PARTITIONS": str(settings.kafka_partitions),
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        "SMTP_URL": settings.smtp_url.get(),
        "PUBLIC_URL": settings.public_url,
        "ALLOW_PRIVATE_WEBHOOKS": "true" if settings.allow_private_webhooks else "false",
        "TICKERBELL_VAR": str(settings.var_dir),
        # a PUBLIC_URL off loopback (tb.test) makes every process refuse a weak key
        "SECRET_KEY": key if not weak_secret_key(key := settings.secret_key.get()) else "tests-only-" + "k" * 40,
        "LOG_LEVEL": "INFO",
    })
    env.update(extra)
    return env


class Proc:
    """A ``python -m alerts ...`` child in its own process group, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "alerts", *args], env=env, cwd=ROOT,
                                      stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole group (a Celery worker's children and beat included)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

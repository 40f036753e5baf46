"""docker-compose.yml is valid and runs the same processes as the Procfile (validated by the
docker-compose client, which needs no engine)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from events.settings import SettingsError, load_settings
from tests.e2e.stack import procfile

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "compose-test-key-Vb7Qx2Lm9Rt4Kz8Wn3Hd6Jy1Pf5"


def run_compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "TRUST_PROXY_HOPS", "PUBLIC_URL")}
    return subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={**base, **env})


def compose_config(secret_key: str = STRONG_KEY) -> dict:
    import yaml

    out = run_compose_config(SECRET_KEY=secret_key)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def module_of(command: str) -> str:
    m = re.search(r"python -m (\S+)(?: (\S+))?", command)
    if m:
        return " ".join(x for x in m.groups() if x and not x.startswith("-"))
    return command.removeprefix("exec ").split()[0]


def test_compose_is_valid_and_mirrors_the_procfile() -> None:
    services = compose_config()["services"]
    assert {"kafka", "postgres", "redis"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka")
    for name, command in procfile().items():
        if name == "release":
            assert "events migrate" in " ".join(services["release"]["command"])
            continue
        assert name in services, f"Procfile process {name} has no compose service"
        svc_cmd = " ".join(services[name]["command"])
        assert module_of(command) in svc_cmd, (name, command, svc_cmd)
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092" and env["DATABASE_URL"].startswith("postgres://")
        assert services[name]["depends_on"]["release"]["condition"] == "service_completed_successfully"


def test_dockerfile_runs_as_non_root_with_a_jre() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "openjdk-17-jre-headless" in text
    assert "spark-sql-kafka-0-10_2.13" in text  # the connector jars come from Maven in a build stage
    assert re.search(r"^COPY .*gunicorn\.conf\.py", text, re.M)  # its bind check runs in the image too


def test_compose_requires_a_secret_key() -> None:
    """No default key: anyone who reads the compose file could otherwise sign a session cookie."""
    out = run_compose_config()
    assert out.returncode != 0
    assert "set SECRET_KEY" in out.stderr


@pytest.mark.parametrize("key", ["change-me-in-production", "secret", "dev-only-insecure-secret-key",
                                 "short-but-random-Qx7"])
def test_compose_services_refuse_a_weak_secret_key(key: str) -> None:
    """The published port makes the stack reachable by others: every service's settings refuse the key."""
    services = compose_config(secret_key=key)["services"]
    for name in ("web", "worker", "release"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        assert env["TICKERBELL_ENV"] == "production"
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            load_settings(env)
    env = {k: str(v) for k, v in compose_config()["services"]["web"]["environment"].items()}
    assert load_settings(env).secret_key.get() == STRONG_KEY

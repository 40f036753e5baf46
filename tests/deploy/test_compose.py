"""docker-compose.yml is valid and runs the same processes as the Procfile (validated by the
docker-compose client, which needs no engine)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.stack import procfile

ROOT = Path(__file__).resolve().parents[2]


def compose_config() -> dict:
    import yaml

    out = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
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

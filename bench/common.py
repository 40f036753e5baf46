"""What every benchmark records beside its figures: the command, the machine, the time."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from contextlib import contextmanager

from events.kafka import admin_client, ensure_topics, topic_specs
from events.settings import Settings, load_settings

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "platform": platform.platform()}


def git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(name: str, figures: dict[str, Any], command: str = "make bench") -> dict[str, Any]:
    result = {
        "benchmark": name, "command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_sha(), "machine": machine(), **figures,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    xs = sorted(values)

    def pick(q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    return {"n": len(xs), "p50": pick(0.5), "p99": pick(0.99), "max": xs[-1], "mean": statistics.fmean(xs)}


@contextmanager
def bench_topics(partitions: int = 6) -> Iterator[Settings]:
    """Settings with a throw-away topic prefix, topics created, and deleted afterwards."""
    settings = replace(load_settings(), kafka_topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.",
                       kafka_partitions=partitions)
    ensure_topics(settings)
    try:
        yield settings
    finally:
        admin_client(settings).delete_topics([s.name for s in topic_specs(settings)], operation_timeout=10)

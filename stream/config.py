"""Settings of the stream job: the shared :class:`~events.settings.Settings` plus Spark's own.

Read once at the edge (``python -m stream``) and passed down. Environment:

``BAR_SECONDS``                bar length (default 60; shared setting)
``STREAM_LATENESS_MS``         watermark delay: how late a tick may arrive (default 2000)
``SPARK_MASTER``               Spark master URL (default ``local[*]``)
``STREAM_CHECKPOINT``          checkpoint folder (default ``$TICKERBELL_VAR/spark/stream``)
``STREAM_TRIGGER_MS``          micro-batch trigger interval (default 500)
``STREAM_SHARDS``              state shards symbols are hashed into (default 4, about 2 per
                               shuffle partition: fewer, bigger pandas batches; fixed
                               for the life of a checkpoint)
``STREAM_SHUFFLE_PARTITIONS``  Spark shuffle partitions (default 2 = the cores here; fixed
                               for the life of a checkpoint)
``STREAM_STARTING_OFFSETS``    where a NEW checkpoint starts reading ``ticks`` and ``history``:
                               ``earliest`` (default, replays the topic) or ``latest``
``STREAM_MAX_OFFSETS_PER_TRIGGER``  cap on ticks per micro-batch (default 200000)
``SPARK_JARS_DIR``             the Kafka connector jars (default ``var/jars/spark``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from events.settings import VAR, Settings, SettingsError, env_int, load_settings

__all__ = ["StreamSettings", "load_stream_settings"]


@dataclass(frozen=True)
class StreamSettings:
    base: Settings
    checkpoint_dir: Path
    lateness_ms: int = 2000
    master: str = "local[*]"
    trigger_ms: int = 500
    shards: int = 4
    shuffle_partitions: int = 2
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int = 200_000
    jars_dir: Path = VAR / "jars" / "spark"
    query_name: str = "tickerbell-stream"

    @property
    def bar_seconds(self) -> int:
        return self.base.bar_seconds

    @property
    def ticks_topic(self) -> str:
        return self.base.topic("ticks")

    @property
    def history_topic(self) -> str:
        return self.base.topic("history")

    @property
    def metrics_topic(self) -> str:
        return self.base.topic("metrics")

    @property
    def dlq_topic(self) -> str:
        return self.base.topic("ticks") + ".dlq"

    @property
    def history_dlq_topic(self) -> str:
        return self.base.topic("history") + ".dlq"

    def jars(self) -> list[str]:
        jars = sorted(str(p) for p in self.jars_dir.glob("*.jar"))
        if not any("spark-sql-kafka" in j for j in jars):
            raise SettingsError(f"no Spark Kafka connector jars in {self.jars_dir}: run `make setup`")
        return jars


def load_stream_settings(env: Mapping[str, str] | None = None, base: Settings | None = None) -> StreamSettings:
    """Read and validate the stream job's settings; raise SettingsError on a bad one."""
    env = os.environ if env is None else env
    base = base or load_settings(env)
    starting = env.get("STREAM_STARTING_OFFSETS") or "earliest"
    if starting not in ("earliest", "latest"):
        raise SettingsError(f"STREAM_STARTING_OFFSETS must be earliest or latest, got {starting!r}")
    return StreamSettings(
        base=base,
        checkpoint_dir=Path(env.get("STREAM_CHECKPOINT") or base.var_dir / "spark" / "stream"),
        lateness_ms=env_int(env, "STREAM_LATENESS_MS", 2000, 0, 86_400_000),
        master=env.get("SPARK_MASTER") or "local[*]",
        trigger_ms=env_int(env, "STREAM_TRIGGER_MS", 500, 0, 3_600_000),
        shards=env_int(env, "STREAM_SHARDS", 4, 1, 100_000),
        shuffle_partitions=env_int(env, "STREAM_SHUFFLE_PARTITIONS", 2, 1, 10_000),
        starting_offsets=starting,
        max_offsets_per_trigger=env_int(env, "STREAM_MAX_OFFSETS_PER_TRIGGER", 200_000, 1, 1_000_000_000),
        jars_dir=Path(env.get("SPARK_JARS_DIR") or VAR / "jars" / "spark"),
    )

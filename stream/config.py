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
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Mapping

from pydantic import Field

from pydantic.dataclasses import dataclass

from events.settings import SECTION, VAR, Settings, SettingsError, build, load_settings, read_env

__all__ = ["StreamSettings", "load_stream_settings"]


@dataclass(frozen=True, config=SECTION)
class StreamSettings:
    """The stream job's section (variables ``STREAM_*`` unless an alias says); ``base`` is the shared one."""

    ENV_PREFIX: ClassVar[str] = "STREAM_"
    base: Settings
    #: unset: ``base.var_dir / "spark" / "stream"`` (see :func:`load_stream_settings`)
    checkpoint_dir: Path = Field(validation_alias="STREAM_CHECKPOINT")
    lateness_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 2000
    master: str = Field(default="local[*]", validation_alias="SPARK_MASTER")
    trigger_ms: Annotated[int, Field(ge=0, le=3_600_000)] = 500
    shards: Annotated[int, Field(ge=1, le=100_000)] = 4
    shuffle_partitions: Annotated[int, Field(ge=1, le=10_000)] = 2
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    max_offsets_per_trigger: Annotated[int, Field(ge=1, le=1_000_000_000)] = 200_000
    jars_dir: Path = Field(default=VAR / "jars" / "spark", validation_alias="SPARK_JARS_DIR")
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
    """Read and validate the stream job's settings; raise SettingsError naming a bad variable."""
    env = os.environ if env is None else env
    base = base or load_settings(env)
    values = read_env(StreamSettings, env, exclude=frozenset({"base"}))
    values.setdefault("STREAM_CHECKPOINT", base.var_dir / "spark" / "stream")
    return build(StreamSettings, {**values, "base": base})

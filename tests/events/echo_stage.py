"""A minimal stage for the consumer tests: copies each tick to ``<prefix>ticks.copy``.

Run as ``python -m tests.events.echo_stage PREFIX GROUP`` so a test can kill it with SIGKILL.
Prints ``ready`` once subscribed, and each committed batch size.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from events.contract import Tick
from events.kafka import StreamRunner, ShutdownFlag
from events.settings import load_settings


def main() -> None:
    prefix, group = sys.argv[1], sys.argv[2]
    settings = replace(load_settings(), kafka_topic_prefix=prefix)
    runner = StreamRunner(
        settings, group, {settings.topic("ticks"): Tick}, lambda batch: [d.event for d in batch],
        batch_size=int(sys.argv[3]) if len(sys.argv) > 3 else 50, shutdown=ShutdownFlag().install(),
        consumer_overrides={"session.timeout.ms": 6000},
        output_topic=lambda _e: settings.topic("ticks.copy"),
    )
    print("ready", flush=True)
    runner.run()
    print(f"stopped consumed={runner.stats.consumed} dlq={runner.stats.dlq}", flush=True)


if __name__ == "__main__":
    main()

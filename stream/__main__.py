"""``python -m stream``: run the Spark job until SIGTERM/SIGINT, then stop it gracefully."""

from __future__ import annotations

import sys

from events.kafka import ShutdownFlag
from events.observability import serve_metrics, setup_logging
from events.settings import SettingsError
from stream.config import load_stream_settings
from stream.runner import run


def main() -> int:
    shutdown = ShutdownFlag().install()  # first: a SIGTERM while the JVM starts must stop cleanly too
    try:
        cfg = load_stream_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging("stream", cfg.base.log_level)
    serve_metrics(cfg.base.metrics_port)
    return run(cfg, shutdown)


if __name__ == "__main__":
    raise SystemExit(main())

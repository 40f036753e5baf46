"""``python -m stream``: run the Spark job until SIGTERM/SIGINT, then stop it gracefully."""

from __future__ import annotations

import logging
import sys

from events.kafka import ShutdownFlag
from events.settings import SettingsError
from stream.config import load_stream_settings
from stream.runner import run


def main() -> int:
    try:
        cfg = load_stream_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.base.log_level, format="%(asctime)s %(levelname)s stream %(message)s")
    return run(cfg, ShutdownFlag().install())


if __name__ == "__main__":
    raise SystemExit(main())

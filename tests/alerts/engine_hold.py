"""``python -m tests.alerts.engine_hold TX HOLD_FILE repeat|resolved``: the engine, frozen inside the
transaction of the first batch holding a reminder (``repeat`` > 0) or a resolve, so a test can SIGKILL
it there.

The real ``EngineRunner`` on the environment's settings; at the hold it writes the alert ids it
produced to HOLD_FILE and waits (librdkafka's threads go on and hand the produced alerts to the
broker, so the open transaction is visible from outside), for the SIGKILL.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from alerts.engine import EngineRunner
from events.settings import load_settings


def main(tx: str, hold_file: str, kind: str) -> None:
    runner = EngineRunner(load_settings(), group_id=f"e-{tx}", transactional_id=tx, stale_after_s=0)

    def hold(alerts: list[Any]) -> None:
        if any((a.repeat > 0) if kind == "repeat" else a.state == "resolved" for a in alerts):
            Path(hold_file).write_text("\n".join(a.id for a in alerts))
            threading.Event().wait()  # until the SIGKILL

    runner.on_produced = hold
    runner.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])

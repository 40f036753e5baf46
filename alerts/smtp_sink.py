"""A local SMTP sink for ``make run``: stores every message it receives as an .eml file."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

log = logging.getLogger(__name__)

__all__ = ["SinkHandler", "start_sink"]


class SinkHandler:
    """aiosmtpd handler writing ``<ms>-<id>.eml`` files into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.folder / (name + ".tmp")
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.rename(self.folder / name)  # readers never see half a message
        log.info("mail from %s to %s stored as %s", envelope.mail_from, ",".join(envelope.rcpt_tos), name)
        return "250 Message accepted for delivery"


def start_sink(folder: Path, host: str = "127.0.0.1", port: int = 2525) -> Controller:
    controller = Controller(SinkHandler(folder), hostname=host, port=port)
    controller.start()
    return controller

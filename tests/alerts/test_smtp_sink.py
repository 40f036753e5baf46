"""The dev SMTP sink stores every message it receives as an .eml file."""

from __future__ import annotations

import email
import email.policy
import smtplib
from email.message import EmailMessage
from pathlib import Path

from alerts.smtp_sink import start_sink
from tests.alerts.conftest import free_port, wait_for


def test_sink_stores_each_message(tmp_path: Path) -> None:
    port = free_port()
    controller = start_sink(tmp_path / "mail", "127.0.0.1", port)
    try:
        for i in range(2):
            msg = EmailMessage()
            msg["Subject"], msg["From"], msg["To"] = f"alert {i}", "a@tb.local", "me@x.y"
            msg.set_content(f"body {i}")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                smtp.send_message(msg)
        files = wait_for(lambda: sorted((tmp_path / "mail").glob("*.eml")) if
                         len(list((tmp_path / "mail").glob("*.eml"))) == 2 else None, what="two .eml files")
    finally:
        controller.stop()
    subjects = {email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"] for f in files}  # type: ignore[union-attr]
    assert subjects == {"alert 0", "alert 1"}

"""Gunicorn settings: gunicorn reads this file from its working directory (the repository root under
the Procfile, honcho and the Dockerfile), whatever the command line says."""

from __future__ import annotations

from typing import Any


def on_starting(server: Any) -> None:
    """Refuse to listen on an address others can reach with a SECRET_KEY anyone could sign a
    session cookie with (load_settings alone sees only PUBLIC_URL, not where the server binds)."""
    from events.settings import SettingsError, load_settings, refuse_weak_key_on_open_binds

    try:
        refuse_weak_key_on_open_binds(load_settings(), list(server.cfg.bind))
    except SettingsError as exc:
        server.log.error("configuration error: %s", exc)
        raise SystemExit(2) from None

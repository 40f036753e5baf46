"""Socket.IO room names, shared by the web app (joins) and the bridge (emits)."""

from __future__ import annotations


def symbol_room(symbol: str) -> str:
    return f"symbol:{symbol}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"

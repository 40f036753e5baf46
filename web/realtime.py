"""Socket.IO events: a connection is a user (session cookie or ``auth={"token": ...}``).

On connect the socket joins its own user room (alerts); ``join``/``leave``
add or drop symbol rooms (market data, the same for everyone). No event lets
a socket into another user's room: an unauthenticated connection is refused.
"""

from __future__ import annotations

from typing import Any

import msgspec
from flask import session as flask_session
from flask_login import current_user
from flask_socketio import SocketIO, join_room, leave_room, rooms

from events import contract
from web.auth import user_for_token
from web.db import get_db
from web.rooms import symbol_room, user_room

MAX_SYMBOL_ROOMS = 200


def _user_id(auth: Any) -> int | None:
    if current_user.is_authenticated:
        return int(current_user.id)
    token = auth.get("token") if isinstance(auth, dict) else None
    if isinstance(token, str) and token:
        user = user_for_token(get_db(), token)
        if user is not None:
            return user.id
    return None


def _symbol(data: Any) -> str | None:
    raw = data.get("symbol") if isinstance(data, dict) else data
    try:
        return msgspec.convert(str(raw or "").strip().upper(), contract.Symbol)  # type: ignore[attr-defined]
    except msgspec.ValidationError:
        return None


def register(socketio: SocketIO) -> None:
    @socketio.on("connect")
    def on_connect(auth: Any = None) -> None:
        user_id = _user_id(auth)
        if user_id is None:
            raise ConnectionRefusedError("authentication required")
        flask_session["sio_user_id"] = user_id
        join_room(user_room(user_id))

    @socketio.on("join")
    def on_join(data: Any) -> dict[str, Any]:
        symbol = _symbol(data)
        if symbol is None:
            return {"ok": False, "error": "not a ticker symbol"}
        if sum(1 for r in rooms() if r.startswith("symbol:")) >= MAX_SYMBOL_ROOMS:
            return {"ok": False, "error": f"at most {MAX_SYMBOL_ROOMS} symbols per connection"}
        join_room(symbol_room(symbol))
        return {"ok": True, "room": symbol_room(symbol)}

    @socketio.on("leave")
    def on_leave(data: Any) -> dict[str, Any]:
        symbol = _symbol(data)
        if symbol is not None:
            leave_room(symbol_room(symbol))
        return {"ok": True}

    @socketio.on("join_user")
    def on_join_user(data: Any) -> dict[str, Any]:
        """Only ever the caller's own room (it is joined on connect already)."""
        own = flask_session.get("sio_user_id")
        wanted = data.get("user_id") if isinstance(data, dict) else data
        if own is None or wanted != own:
            return {"ok": False, "error": "forbidden"}
        join_room(user_room(own))
        return {"ok": True, "room": user_room(own)}

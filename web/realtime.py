"""Socket.IO events: a connection is a user (session cookie or ``auth={"token": ...}``).

On connect the socket joins its own user room (alerts); ``join``/``leave``
add or drop symbol rooms (market data, the same for everyone). No event lets
a socket into another user's room: an unauthenticated connection is refused.

A socket outlives the request that opened it, so its credential is checked
again while it is open: each process keeps what its sockets connected with
(the API token's id, or the session's login nonce) and, every
``SOCKET_RECHECK_S`` seconds, disconnects those whose token was revoked, whose
nonce was rotated (logout, password change) or whose account was disabled.
A logout disconnects the user's session sockets in this process at once.

Each process also keeps which symbol rooms its sockets are in (:class:`ViewedRooms`)
and, while any is, keeps them in the shared viewed set (``web.rooms``) with a
background task: the bridge pushes market data only to rooms in that set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import redis
from flask import Flask, current_app, g, request
from flask import session as flask_session
from flask_login import current_user, user_logged_out
from flask_socketio import SocketIO, join_room, leave_room, rooms
from sqlalchemy import select

from events import contract, models
from web.auth import hash_token, user_for_token
from web.db import get_db
from web.rooms import VIEWED_REFRESH_S, VIEWED_TTL_S, publish_viewed, symbol_room, user_room

log = logging.getLogger(__name__)

MAX_SYMBOL_ROOMS = 200
RECHECK_S = 5.0  # how long a revoked credential may keep an open socket at most (config SOCKET_RECHECK_S)


@dataclass(frozen=True)
class SocketAuth:
    """What a socket connected with: a user and either an API token's id or a session's login nonce."""

    user_id: int
    token_id: int | None = None
    nonce: str | None = None


def _token(auth: Any) -> str | None:
    """An API token from the handshake: ``auth={"token": ...}`` or an ``Authorization: Bearer`` header."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if isinstance(token, str) and token:
        return token
    header = request.headers.get("Authorization", "")
    return header[7:].strip() or None if header.lower().startswith("bearer ") else None


def _authenticate(auth: Any) -> SocketAuth | None:
    if current_user.is_authenticated and not g.get("token_auth"):  # a session (cookie), not a bearer header
        login_id = getattr(current_user, "login_id", None)
        return SocketAuth(int(current_user.id), nonce=getattr(login_id, "nonce", None) or "")
    token = _token(auth)
    if token:
        user = user_for_token(get_db(), token)
        if user is not None:
            token_id = get_db().scalar(select(models.ApiToken.id).where(models.ApiToken.token_hash == hash_token(token)))
            if token_id is not None:
                return SocketAuth(user.id, token_id=token_id)
    return None


def stale(sockets: dict[str, SocketAuth], tokens: set[int], users: dict[int, tuple[bool, str]]) -> list[str]:
    """The sids whose credential no longer holds (pure).

    ``tokens``: ids of the API tokens that still exist; ``users``: user id ->
    (is active, current auth nonce) for the users that still exist.
    """
    out = []
    for sid, auth in sockets.items():
        active, nonce = users.get(auth.user_id, (False, ""))
        if not active:
            out.append(sid)
        elif auth.token_id is not None:
            if auth.token_id not in tokens:
                out.append(sid)
        elif auth.nonce != (nonce or ""):
            out.append(sid)
    return out


class OpenSockets:
    """This process's open sockets of one app, and the thread that re-checks them while any is open."""

    def __init__(self, app: Flask, socketio: SocketIO) -> None:
        self.app = app
        self.socketio = socketio
        self.by_sid: dict[str, SocketAuth] = {}
        self.lock = threading.Lock()
        self.checking = False

    def add(self, sid: str, auth: SocketAuth) -> None:
        with self.lock:
            self.by_sid[sid] = auth
            if self.checking:
                return
            self.checking = True
        self.socketio.start_background_task(self._recheck_while_open)

    def remove(self, sid: str) -> None:
        with self.lock:
            self.by_sid.pop(sid, None)

    def drop(self, sids: list[str]) -> None:
        for sid in sids:
            self.remove(sid)
            viewed_rooms(self.app).forget(sid)  # the disconnect handler does too; this one needs no request
            try:
                self.socketio.server.disconnect(sid, namespace="/")
            except Exception:  # noqa: BLE001 - already gone: nothing left to cut
                log.debug("socket %s already gone", sid, exc_info=True)

    def drop_sessions_of(self, user_id: int) -> None:
        with self.lock:
            sids = [sid for sid, a in self.by_sid.items() if a.user_id == user_id and a.token_id is None]
        self.drop(sids)

    def recheck(self) -> list[str]:
        """Disconnect the sockets whose credential was revoked; return their sids."""
        with self.lock:
            sockets = dict(self.by_sid)
        if not sockets:
            return []
        user_ids = {a.user_id for a in sockets.values()}
        token_ids = {a.token_id for a in sockets.values() if a.token_id is not None}
        with self.app.extensions["tickerbell_sessions"]() as s:
            users = {uid: (bool(active), nonce or "") for uid, active, nonce in s.execute(
                select(models.User.id, models.User.is_active, models.User.auth_nonce).where(models.User.id.in_(user_ids)))}
            tokens = set(s.scalars(select(models.ApiToken.id).where(models.ApiToken.id.in_(token_ids)))) if token_ids else set()
        gone = stale(sockets, tokens, users)
        self.drop(gone)
        return gone

    def _recheck_while_open(self) -> None:
        interval_s = float(self.app.config.get("SOCKET_RECHECK_S", RECHECK_S))
        while True:
            self.socketio.sleep(interval_s)
            with self.lock:
                if not self.by_sid:
                    self.checking = False
                    return
            try:
                self.recheck()
            except Exception:  # noqa: BLE001 - a database blip: try again next round, keep the thread
                log.warning("re-checking open sockets failed", exc_info=True)


def open_sockets(app: Flask | None = None) -> OpenSockets:
    """The app's :class:`OpenSockets` (made on first use: ``create_app`` knows nothing of it)."""
    # the proxy's object itself: the socket threads outlive the app context (Flask types current_app
    # as a plain Flask, without the proxy's methods)
    return cast(OpenSockets, _extension("tickerbell_open_sockets", OpenSockets, app))


def _extension(key: str, make: Any, app: Flask | None) -> Any:
    """The app's ``key`` extension, made with ``make(app, socketio)`` on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get(key)
    if found is None:
        found = app.extensions.setdefault(key, make(app, app.extensions["socketio"]))
    return found


class ViewedRooms:
    """The symbol rooms with a socket in this process, kept in the shared viewed set while they last.

    ``join``/``leave``/``forget`` are called by the socket handlers and never touch Redis: a
    background task publishes the rooms every ``VIEWED_REFRESH_S`` seconds (config), and at
    once when a room gains its first socket here; entries live ``VIEWED_TTL_S`` past the last
    refresh. The task ends when no room is left (it starts again with the next join). While
    Redis is away the task logs once and keeps trying; the bridge meanwhile emits everything.
    """

    def __init__(self, app: Flask, socketio: SocketIO) -> None:
        self.socketio = socketio
        self.prefix = str(app.config["REDIS_PREFIX"])
        self.ttl_s = float(app.config.get("VIEWED_TTL_S", VIEWED_TTL_S))
        self.refresh_s = float(app.config.get("VIEWED_REFRESH_S", VIEWED_REFRESH_S))
        url = app.extensions["tickerbell_settings"].redis_url
        self.redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.by_sid: dict[str, set[str]] = {}
        self.sockets: Counter[str] = Counter()  # symbol -> sockets of this process in its room
        self.lock = threading.Lock()
        self.publishing = False
        self.publications = 0
        self._wake = socketio.server.eio.create_event()
        self._failing = False

    def join(self, sid: str, symbol: str) -> None:
        with self.lock:
            joined = self.by_sid.setdefault(sid, set())
            if symbol in joined:
                return
            joined.add(symbol)
            self.sockets[symbol] += 1
            first = self.sockets[symbol] == 1
            start = not self.publishing
            self.publishing = True
        if first:
            self._wake.set()
        if start:
            self.socketio.start_background_task(self._publish_while_viewed)

    def leave(self, sid: str, symbol: str) -> None:
        with self.lock:
            joined = self.by_sid.get(sid)
            if joined is None or symbol not in joined:
                return
            joined.discard(symbol)
            if not joined:
                del self.by_sid[sid]
            self._drop(symbol)

    def forget(self, sid: str) -> None:
        """A socket is gone: it leaves every room it was in."""
        with self.lock:
            for symbol in self.by_sid.pop(sid, set()):
                self._drop(symbol)

    def _drop(self, symbol: str) -> None:  # under the lock
        self.sockets[symbol] -= 1
        if self.sockets[symbol] <= 0:
            del self.sockets[symbol]  # not removed from Redis: another process may view it too; it expires

    def symbols(self) -> set[str]:
        with self.lock:
            return set(self.sockets)

    def publish(self) -> None:
        """One ZADD of this process's rooms (raises :class:`redis.RedisError` when Redis is away)."""
        publish_viewed(self.redis, self.prefix, self.symbols(), time.time(), self.ttl_s)
        self.publications += 1

    def _publish_while_viewed(self) -> None:
        while True:
            with self.lock:
                if not self.sockets:
                    self.publishing = False
                    return
            try:
                self.publish()
            except redis.RedisError as exc:
                if not self._failing:
                    log.warning("viewed rooms not published (%s): retrying every %.1f s", exc, self.refresh_s)
                self._failing = True
            else:
                if self._failing:
                    log.info("viewed rooms published again")
                self._failing = False
            self._wake.wait(self.refresh_s)
            self._wake.clear()


def viewed_rooms(app: Flask | None = None) -> ViewedRooms:
    """The app's :class:`ViewedRooms` (made on first use)."""
    return cast(ViewedRooms, _extension("tickerbell_viewed_rooms", ViewedRooms, app))


def _on_logout(app: Flask, user: Any = None, **_: Any) -> None:
    """Logging out rotates the user's nonce (every session ends): their session sockets end with it."""
    if user is not None and getattr(user, "id", None) is not None and "tickerbell_open_sockets" in app.extensions:
        open_sockets(app).drop_sessions_of(int(user.id))


user_logged_out.connect(_on_logout)  # by call: Flask-Login's signal is untyped, the function keeps its type


def _symbol(data: Any) -> str | None:
    raw = data.get("symbol") if isinstance(data, dict) else data
    try:
        return msgspec.convert(str(raw or "").strip().upper(), contract.Symbol)
    except msgspec.ValidationError:
        return None


def _sid() -> str:
    """This socket's id: Flask-SocketIO sets ``request.sid`` on the request of each event (Flask's
    types do not know the attribute)."""
    return str(request.sid)  # type: ignore[attr-defined]


def register(socketio: SocketIO) -> None:
    """Bind the socket events (by ``on_event``: Flask-SocketIO is untyped, the handlers keep their types)."""

    def on_connect(auth: Any = None) -> None:
        found = _authenticate(auth)
        if found is None:
            raise ConnectionRefusedError("authentication required")
        flask_session["sio_user_id"] = found.user_id
        join_room(user_room(found.user_id))
        open_sockets().add(_sid(), found)

    def on_disconnect(*_reason: Any) -> None:
        open_sockets().remove(_sid())
        viewed_rooms().forget(_sid())

    def on_join(data: Any) -> dict[str, Any]:
        symbol = _symbol(data)
        if symbol is None:
            return {"ok": False, "error": "not a ticker symbol"}
        if sum(1 for r in rooms() if r.startswith("symbol:")) >= MAX_SYMBOL_ROOMS:
            return {"ok": False, "error": f"at most {MAX_SYMBOL_ROOMS} symbols per connection"}
        join_room(symbol_room(symbol))
        viewed_rooms().join(_sid(), symbol)
        return {"ok": True, "room": symbol_room(symbol)}

    def on_leave(data: Any) -> dict[str, Any]:
        symbol = _symbol(data)
        if symbol is not None:
            leave_room(symbol_room(symbol))
            viewed_rooms().leave(_sid(), symbol)
        return {"ok": True}

    def on_join_user(data: Any) -> dict[str, Any]:
        """Only ever the caller's own room (it is joined on connect already)."""
        own = flask_session.get("sio_user_id")
        wanted = data.get("user_id") if isinstance(data, dict) else data
        if own is None or wanted != own:
            return {"ok": False, "error": "forbidden"}
        join_room(user_room(own))
        return {"ok": True, "room": user_room(own)}

    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
    socketio.on_event("join", on_join)
    socketio.on_event("leave", on_leave)
    socketio.on_event("join_user", on_join_user)

"""One SQLAlchemy session per request (``get_db()``), closed at teardown."""

from __future__ import annotations

from typing import cast

from flask import Flask, current_app, g
from sqlalchemy.orm import Session, sessionmaker

from events.db import session_factory
from events.settings import Settings


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["tickerbell_sessions"] = session_factory(settings)
    app.teardown_appcontext(_close)


def sessions() -> sessionmaker[Session]:
    return cast("sessionmaker[Session]", current_app.extensions["tickerbell_sessions"])


def get_db() -> Session:
    session = g.get("db")
    if not isinstance(session, Session):
        session = g.db = sessions()()
    return session


def _close(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()

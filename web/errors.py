"""One error handler: roll back, then answer JSON to API clients and a page to people."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from web.store.errors import (BadLink, Conflict, Forbidden, Invalid, LimitExceeded, NotFound, StoreError,
                              Unavailable)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An expected failure with a status code, a message and optional per-field messages."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}
        self.extra = extra


class ValidationFailed(ApiError):
    """Input that does not validate: 422 with a message per field."""

    def __init__(self, fields: dict[str, str], message: str | None = None) -> None:
        name, text = next(iter(fields.items()), ("", "invalid input"))
        super().__init__(422, message or (f"{name}: {text}" if name else text), fields)


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, f"{what} not found")


#: the one mapping of the store's domain errors to HTTP (the most specific class wins)
STATUS_OF: dict[type[StoreError], int] = {
    Invalid: 422, NotFound: 404, Conflict: 409, LimitExceeded: 409, Forbidden: 403, Unavailable: 503, BadLink: 400,
}


def status_of(exc: StoreError) -> int:
    """The HTTP status of a domain error (a subclass not named maps as its nearest named base)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def api_error(exc: StoreError) -> ApiError:
    """A domain error as the edge answers it: same message, fields and extra facts."""
    return ApiError(status_of(exc), exc.message, exc.fields, **exc.extra)


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz"):
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _rollback() -> None:
    session = g.get("db")
    if session is not None:
        session.rollback()


def _respond(status: int, error: str, message: str, fields: dict[str, str] | None = None,
             **extra: Any) -> tuple[Response | str, int]:
    if wants_json():
        body: dict[str, Any] = {"error": error, "message": message}
        if fields:
            body["fields"] = fields
        body.update(extra)
        return jsonify(body), status
    return render_template("error.html", status=status, error=error, message=message), status


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> tuple[Response | str, int]:
        _rollback()
        name = {400: "bad_request", 404: "not_found", 413: "too_large", 422: "validation", 409: "conflict", 429: "rate_limited",
                401: "unauthorized", 403: "forbidden", 503: "unavailable"}.get(exc.status, "error")
        resp = _respond(exc.status, name, exc.message, exc.fields, **exc.extra)
        if exc.status == 429 and "retry_after_s" in exc.extra and isinstance(resp[0], Response):
            resp[0].headers["Retry-After"] = str(exc.extra["retry_after_s"])
        return resp

    @app.errorhandler(StoreError)
    def _store_error(exc: StoreError) -> tuple[Response | str, int]:
        return _api_error(api_error(exc))

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[Response | str, int]:
        _rollback()
        return _respond(400, "csrf", f"CSRF check failed: {exc.description}")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response | str, int]:
        _rollback()
        return _respond(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response | str, int]:
        _rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "internal_error", InternalServerError.description)

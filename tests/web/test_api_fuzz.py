"""Fuzzing of the REST API from its own OpenAPI document: whatever comes in, never a 5xx.

schemathesis generates requests (valid and invalid bodies, odd path and query values)
for every operation the served document describes, authenticated with a real bearer token.
"""

from __future__ import annotations

import pytest
import schemathesis
# Loaded now, at collection, on the main thread alone: pytest rewrites schemathesis (a pytest
# plugin) on import, and CPython 3.11 < 3.11.8 can fail ast.parse with "AST constructor
# recursion depth mismatch" when another thread parses at the same time (python/cpython#106905).
import schemathesis.specs.openapi.schemas  # noqa: F401
from flask import Flask
from hypothesis import HealthCheck, given, settings

from tests.web.conftest import Api


@pytest.fixture
def token(sqlite_app: Flask) -> str:
    api = Api(sqlite_app.test_client())
    api.register("fuzz@example.com")
    resp = api.post("/api/tokens", {"name": "fuzz"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return body.get("token") or body["secret"]


def test_api_never_answers_5xx(sqlite_app: Flask, token: str) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", sqlite_app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")
            ctype = response.headers.get("content-type") or ""
            ctype = ctype[0] if isinstance(ctype, list) else ctype
            if 400 <= response.status_code < 500 and ctype.startswith("application/json"):
                body = response.json()
                if not (isinstance(body, dict) and body.get("error")):
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code} without a message")

        check()
    assert operations >= 40, f"only {operations} operations in the OpenAPI document"
    assert failures == [], "\n".join(failures[:20])

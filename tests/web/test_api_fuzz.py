"""Fuzzing of the REST API from its own OpenAPI document: whatever comes in, never a 5xx.

schemathesis generates requests (valid and invalid bodies, odd path and query values)
for every operation the served document describes, authenticated with a real bearer token:
schema-valid ones, and (its negative mode) ones that break the schema. On top, every
property of every documented body gets each JSON type it is not (an object, an array of
nulls, a boolean, a 25-digit integer, ...): the answer is a 422 that names the property.
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
from schemathesis import GenerationMode

from tests.web.conftest import Api
from web.openapi import BODIES, SCHEMAS, type_errors


@pytest.fixture
def token(sqlite_app: Flask) -> str:
    api = Api(sqlite_app.test_client())
    api.register("fuzz@example.com")
    resp = api.post("/api/tokens", {"name": "fuzz"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    return body.get("token") or body["secret"]


def fuzz(app: Flask, token: str, mode: GenerationMode, max_examples: int, only_bodies: bool = False) -> tuple[int, list[str]]:
    """Run schemathesis over the served document; return (operations run, failures)."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if only_bodies and not list(operation.body.items):
            continue
        operations += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
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
    return operations, failures


def test_api_never_answers_5xx(sqlite_app: Flask, token: str) -> None:
    operations, failures = fuzz(sqlite_app, token, GenerationMode.POSITIVE, max_examples=12)
    assert operations >= 40, f"only {operations} operations in the OpenAPI document"
    assert failures == [], "\n".join(failures[:20])


def test_bodies_that_break_the_schema_never_answer_5xx(sqlite_app: Flask, token: str) -> None:
    operations, failures = fuzz(sqlite_app, token, GenerationMode.NEGATIVE, max_examples=8, only_bodies=True)
    assert operations >= 12, f"only {operations} operations with a body"
    assert failures == [], "\n".join(failures[:20])


# One value of each JSON type, the awkward ones the review sent among them.
WRONG = [{}, {"a": 1}, [None, None], [], True, 10**25, -1, 1.5, "x", "", None]


def test_every_body_property_of_a_wrong_json_type_is_422_naming_it(sqlite_app: Flask, token: str) -> None:
    api = Api(sqlite_app.test_client())
    headers = {"Authorization": f"Bearer {token}"}
    client = sqlite_app.test_client()
    wl = client.get("/api/watchlists", headers=headers).get_json()[0]["id"]
    client.post(f"/api/watchlists/{wl}/symbols", json={"symbol": "AAPL"}, headers=headers)
    rule = client.post("/api/rules", json={"symbol": "AAPL", "condition": {"series": "price", "op": "less_than", "value": 1}},
                       headers=headers).get_json()["id"]
    ids = {"watchlist_id": wl, "rule_id": rule, "channel_id": 1, "token_id": 1}
    urls = {(r.endpoint, m): r for r in sqlite_app.url_map.iter_rules() for m in (r.methods or ()) if r.endpoint in BODIES}
    failures: list[str] = []
    sent = 0
    for (endpoint, method), url_rule in sorted(urls.items(), key=lambda kv: kv[0]):
        if method not in ("POST", "PUT", "PATCH") or endpoint in ("api.register", "api.login", "api.issue_token"):
            continue  # the account forms are rate limited: their fields are covered by the negative fuzz above
        url = url_rule.build({a: ids[a] for a in url_rule.arguments}, append_unknown=False)[1]
        schema = SCHEMAS[BODIES[endpoint]]
        for prop, sub in schema["properties"].items():
            for value in WRONG:
                expect = type_errors({prop: value}, schema)
                resp = client.open(url, method=method, json={prop: value}, headers=headers)
                sent += 1
                where = f"{method} {url} {{{prop!r}: {value!r}}} -> {resp.status_code}"
                if resp.status_code >= 500:
                    failures.append(f"{where}: {resp.get_data(as_text=True)[:200]}")
                elif expect and (resp.status_code != 422 or not set(expect) <= set(resp.get_json().get("fields", {}))):
                    failures.append(f"{where}, not a 422 naming {sorted(expect)}: {resp.get_data(as_text=True)[:200]}")
    assert sent >= 300, sent
    assert api.client.get("/api/me", headers=headers).status_code == 200  # still the same healthy app
    assert failures == [], "\n".join(failures[:20])

"""The served OpenAPI document's rule schemas come from the vocabulary (events/vocabulary.py): its
series, operator and frequency enums are the vocabulary's, and so are the parameters' bounds."""

from __future__ import annotations

from flask import Flask

from events.vocabulary import FREQUENCIES, OPERATORS, PARAMS, SERIES
from web.openapi import type_errors


def test_the_documents_enums_are_the_vocabularys(sqlite_app: Flask) -> None:
    doc = sqlite_app.test_client().get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    condition = schemas["Condition"]["properties"]
    assert condition["series"]["enum"] == list(SERIES)
    assert condition["op"]["enum"] == list(OPERATORS)
    assert condition["other"]["enum"] == [*SERIES, None]
    assert schemas["Rule"]["properties"]["frequency"]["enum"] == list(FREQUENCIES)
    assert schemas["Preview"]["properties"]["frequency"]["enum"] == list(FREQUENCIES)
    for name, param in PARAMS.items():
        assert condition[name].get("minimum") == param.minimum and condition[name].get("maximum") == param.maximum
    assert condition["also"]["oneOf"][0] == {"$ref": "#/components/schemas/Condition"}


def test_the_catalog_the_form_reads_is_the_vocabulary(sqlite_app: Flask) -> None:
    from tests.web.conftest import Api

    api = Api(sqlite_app.test_client())
    api.register("carol@example.com")
    catalog = api.get("/api/rules/catalog").get_json()
    assert set(catalog["series"]) == set(SERIES) and set(catalog["operators"]) == set(OPERATORS)  # JSON sorts keys
    assert catalog["groups"] == catalog["operator_groups"]
    assert {op for ops in catalog["groups"].values() for op in ops} == set(OPERATORS)
    assert catalog["operator_info"]["moving_up_pct"]["label"] == OPERATORS["moving_up_pct"].label
    assert catalog["series_info"]["rsi_14"] == {"label": "RSI 14", "unit": "index", "source": "bar",
                                                "description": SERIES["rsi_14"].description}
    page = api.get("/rules/new").get_data(as_text=True)
    for name, o in OPERATORS.items():  # the form lists each operator by its vocabulary label
        assert f'<option value="{name}">{o.label}</option>' in page


def test_the_bounds_in_the_document_are_the_first_check_of_a_body() -> None:
    from web.openapi import SCHEMAS

    too_long = PARAMS["window_s"].maximum + 1  # type: ignore[operator]
    assert type_errors({"condition": {"series": "price", "op": "moving_up", "value": 1, "window_s": too_long}},
                       SCHEMAS["Rule"]) == {"condition.window_s": f"must be between 1 and {too_long - 1}"}

"""The pages' alert value formatter (web/static/app.js, TB.fmt.alertValue / alertLevel), run in node:
values of percent rules read "1.71 %", not as a price, and every unit matches alerts/templates.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from alerts.templates import fmt_value

APP_JS = Path(__file__).resolve().parents[2] / "web" / "static" / "app.js"
NODE = shutil.which("node")  # installed by the set-up with npm (scripts/setup.sh): a missing one fails, not skips


def in_node(alerts: list[dict[str, Any]], vocabulary: dict[str, Any] | None = None) -> list[list[str]]:
    """``[alertValue(a), alertLevel(a)]`` for each alert, as the pages compute them (given the
    vocabulary's units, as every page carries them, or from the name patterns alone)."""
    script = (f"const {{ fmt }} = require({json.dumps(str(APP_JS))});"
              f"fmt.useVocabulary({json.dumps(vocabulary)});"
              f"process.stdout.write(JSON.stringify({json.dumps(alerts)}.map((a) => [fmt.alertValue(a), fmt.alertLevel(a)])));")
    assert NODE is not None
    env = {**os.environ, "LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8"}  # toLocaleString's separators
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True, timeout=30, env=env).stdout
    return json.loads(out)


def a(series: str, op: str, value: float | None, threshold: float | None = None) -> dict[str, Any]:
    return {"series": series, "op": op, "value": value, "threshold": threshold}


CASES = [
    (a("price", "moving_up_pct", 1.71234, 0.2), ["1.71 %", "0.20 %"]),       # was 1.71234 / 0.2 as prices
    (a("close", "moving_down_pct", 0.870928, 0.5), ["0.87 %", "0.50 %"]),
    (a("price", "greater_than", 0.870928, 0.9), ["0.8709", "0.90"]),
    (a("price", "crossing_up", 250.31, 250), ["250.31", "250.00"]),
    (a("sma_200", "crossing_up", 1234567.891, 1234000), ["1,234,567.89", "1,234,000.00"]),
    (a("price", "moving_up", 0.35, 0.2), ["0.35", "0.20"]),
    (a("volume", "greater_than", 12345.6, 10000), ["12,346", "10,000"]),
    (a("volume_ratio", "greater_than", 3.104, 3), ["3.10", "3.00"]),
    (a("zscore_20", "outside_channel", -3.215, -3), ["-3.21", "-3.00"]),
    (a("rsi_14", "crossing_down", 28.43, 30), ["28.4", "30"]),
    (a("volatility_20", "greater_than", 1.234, 1), ["1.23 %", "1.00 %"]),
    (a("forecast.move_pct", "less_than", -1.5, -1), ["-1.50 %", "-1.00 %"]),
    (a("feed", "stale", 312, 300), ["312 s", "5 min"]),
    (a("close", "greater_than", None, None), ["—", "—"]),
]


def test_alert_values_are_formatted_for_their_series() -> None:
    assert in_node([c for c, _ in CASES]) == [expected for _, expected in CASES]


def test_the_vocabularys_units_give_the_same_formats() -> None:
    """The pages format with the vocabulary's units (web/store/conditions.UNITS_FOR_PAGES, in base.html):
    the same text as the messages for every series the vocabulary defines and for the cases above."""
    from events.vocabulary import OPERATORS, SERIES
    from web.store.conditions import UNITS_FOR_PAGES

    every = [a(name, op, 1234.5678, 0.4321) for name in SERIES for op in ("greater_than", "moving_up_pct")]
    got = in_node(every + [c for c, _ in CASES], UNITS_FOR_PAGES)
    assert got[len(every):] == [expected for _, expected in CASES]
    for alert, (value, level) in zip(every, got):
        assert [value, level] == [fmt_value(alert["value"], alert["series"], alert["op"]),
                                  fmt_value(alert["threshold"], alert["series"], alert["op"])], alert
    assert set(UNITS_FOR_PAGES["percent_ops"]) == {n for n, o in OPERATORS.items() if o.percent}


@pytest.mark.parametrize("alert", [c for c, _ in CASES if c["value"] is not None], ids=lambda c: f"{c['series']}-{c['op']}")
def test_the_pages_and_the_messages_agree(alert: dict[str, Any]) -> None:
    [[value, level]] = in_node([alert])
    assert value == fmt_value(alert["value"], alert["series"], alert["op"])
    assert level == fmt_value(alert["threshold"], alert["series"], alert["op"])


def test_alert_pages_show_a_percent_rule_in_percent(base_settings, tmp_path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    """In Chromium: the alert list, the alert detail and the dashboard show a percent rule's value as
    "1.71 %" (they showed the price-formatted 1.71 and the raw 1.71234)."""
    from dataclasses import replace

    from playwright.sync_api import expect, sync_playwright

    from events import models
    from events.db import session_factory, upgrade
    from tests.web.conftest import confirm_in_browser, make_app
    from tests.web.test_browser import CHROMIUM_ARGS

    url = f"sqlite:///{tmp_path / 'fmt.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url)
    server = live_server_factory(make_app(settings))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/register")
        page.fill("#email", "fmt@example.com")
        page.fill("#password", "correct horse battery")
        page.click("button[type=submit]")
        confirm_in_browser(page, server, "fmt@example.com")
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        user_id = page.evaluate("Number(document.body.dataset.user)")
        with session_factory(settings)() as s:  # what the projector writes for an alert of the engine
            s.add(models.AlertRecord(id="alert:fmt1", rule_id=9, rule_version=1, user_id=user_id, symbol="AAPL",
                                     state="firing", ts_ms=int(time.time() * 1000) - 60_000,
                                     series="price", op="moving_up_pct", value=1.71234, threshold=0.2,
                                     message="AAPL up 1.71 % in 1 min (rule: at least 0.2 %)",
                                     trigger_event_id="sim:AAPL:1"))
            s.commit()
        page.goto(f"{server.url}/alerts")
        row = page.locator('#alerts-table tr[data-alert="alert:fmt1"]')
        expect(row.locator("td.num").nth(0)).to_have_text("1.71 %")
        expect(row.locator("td.num").nth(1)).to_have_text("0.20 %")
        page.goto(f"{server.url}/alerts/alert:fmt1")
        expect(page.locator("#alert-value")).to_have_text("1.71 %")
        expect(page.locator("#alert-level")).to_have_text("0.20 %")
        page.goto(f"{server.url}/dashboard")
        expect(page.locator('#recent-alerts tr[data-alert="alert:fmt1"] td.num')).to_contain_text("1.71 %")
        assert errors == [], errors
        browser.close()

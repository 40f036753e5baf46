"""A new user's first minute, in a real Chromium over the real pipeline: data follows the user.

Register, add a symbol that is in no default list (AMD), and see it come alive: a live price
within 10 s, a chart with at least 100 bars of history and SMA 20 from the first minute, a
forecast band, and a rule preview that lists firings over that history. Nothing is produced
by the test: the relay, ingest (simulator, following the ``watched`` topic, with its
simulated backfill), the Spark job and the forecaster run as their Procfile processes; the
projector and the bridge run in threads as in the other browser test. Bars are 2 s long so
live bars close within the test.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import replace
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from events.db import upgrade
from events.kafka import ShutdownFlag
from events.settings import Settings
from tests.e2e.stack import Stack
from tests.web.conftest import confirm_in_browser, make_app
from tests.web.test_browser import CHROMIUM_ARGS, SHOTS
from tests.web.read_side import start_read_side

BAR_SECONDS = 2
HISTORY_BARS = 150


def chart_traces(page) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Trace name -> its y values, as Plotly holds them on the page."""
    return page.evaluate("""() => Object.fromEntries((document.getElementById('chart').data || [])
        .map(t => [t.name, Array.from(t.y || []).filter(v => v !== null && v !== undefined)]))""")


def reload_until(page, predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    """Reload the page until ``predicate(page)`` is truthy (the data arrives through other processes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.wait_for_load_state("networkidle")
        got = predicate(page)
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        page.wait_for_timeout(1000)  # between reloads of a page, not synchronisation of the test
        page.reload()


def test_a_new_symbol_streams_with_history_indicators_forecast_and_preview(
        kafka_settings: Settings, tmp_path: Path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url, bar_seconds=BAR_SECONDS)
    stack = Stack.create(tmp_path / "stack", settings.kafka_topic_prefix, DATABASE_URL=url,
                         BAR_SECONDS=str(BAR_SECONDS), INGEST_HISTORY_BARS=str(HISTORY_BARS),
                         STREAM_STARTING_OFFSETS="earliest", STREAM_LATENESS_MS="500")
    app = make_app(settings)
    server = live_server_factory(app)
    shutdown = ShutdownFlag()
    threads: list[threading.Thread] = []
    try:
        for name in ("stream", "relay", "ingest"):
            stack.start(name, **({"INGEST_RATE": "40"} if name == "ingest" else {}))
        trained = stack.run("python -m predict ensure-model", timeout_s=600)  # while Spark starts
        assert trained.returncode == 0, trained.stdout + trained.stderr
        stack.start("predict")
        threads = start_read_side(app, settings, shutdown, bridge_offset_reset="latest")
        SHOTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.url}/register")
            page.fill("#email", "newcomer@example.com")
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            confirm_in_browser(page, server, "newcomer@example.com")  # the link the sign-up mails, and its button
            expect(page).to_have_url(re.compile(r"/dashboard$"))

            page.fill("#add-symbol input[name=symbol]", "AMD")
            added = time.monotonic()
            page.click("#add-symbol button[type=submit]")
            row = page.locator('#watchlist-table tr[data-symbol="AMD"]')
            expect(row).to_be_visible()
            expect(row.locator(".price")).not_to_have_text("—", timeout=10_000)  # a live tick, over Socket.IO
            first_price_s = time.monotonic() - added
            assert first_price_s < 10, first_price_s

            page.goto(f"{server.url}/symbols/AMD")
            chart = page.locator("#chart")
            reload_until(page, lambda pg: int(chart.get_attribute("data-bars") or 0) >= 100, 180,
                         "100 bars of AMD's history on its chart")
            traces = chart_traces(page)
            assert len(traces["SMA 20"]) >= 100 - 19, "SMA 20 is drawn over the history"
            reload_until(page, lambda pg: any(n.startswith("Forecast interval") for n in chart_traces(pg)), 180,
                         "a forecast band on AMD's chart")
            expect(page.locator("#last-price")).not_to_have_text("—")
            expect(page.locator("#forecast-note")).to_contain_text("Trained on 2-second bars")  # the bars it serves
            page.wait_for_timeout(400)  # let Plotly finish drawing before the screenshot (not synchronisation)
            page.screenshot(path=str(SHOTS / "new-symbol.png"), full_page=True)

            closes = [float(v) for v in page.evaluate(
                "() => document.getElementById('chart').data.find(t => t.type === 'candlestick').close")]
            level = round(sorted(closes)[len(closes) // 2], 2)  # the history's median close: crossed many times
            page.goto(f"{server.url}/rules/new?symbol=AMD")
            page.select_option("#preset", "price_above")
            page.fill("#value", str(level))
            page.fill("#name", f"AMD above {level}")
            page.click("#preview-btn")
            expect(page.locator("#preview-count")).not_to_have_text(re.compile(r"^(–|0)$"))
            assert errors == [], errors
            browser.close()
    finally:
        shutdown.set()
        for t in threads:
            t.join(30)
        stack.stop_all()

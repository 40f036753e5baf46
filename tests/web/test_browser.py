"""The product in a real headless Chromium (Debian's, driven by Playwright).

Register, add a symbol, create a price rule (with its preview), watch the
chart update live, see the alert appear. Market data and the alert are
produced straight to Kafka with ``EventProducer`` because the stream job and
the rule engine are other stages; the projector and the bridge run here in
threads, exactly as their processes would. Screenshots go to docs/screenshots/.
(test_browser_engine.py takes a rule made in the form through the real relay and engine.)
"""

from __future__ import annotations

import os

import math
import random
import re
import time
from dataclasses import replace
from pathlib import Path

import msgspec
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import func, select

from events import models
from events.db import session_factory, upgrade
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from tests.web.conftest import confirm_in_browser, make_app
from tests.web.events_factory import alert, bar, prediction, tick
from tests.web.read_side import start_read_side

# UPDATE_SCREENSHOTS=1 refreshes the README's pictures; otherwise they go to var/ so a test run
# leaves the working tree clean
SHOTS = Path(__file__).resolve().parents[2] / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") else "var") / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def history(symbol: str, start_ms: int, n: int, price: float, seed: int) -> list:
    """A plausible random walk of 1-minute bars with their SMAs (what the stream stage would emit)."""
    rng = random.Random(seed)
    closes: list[float] = []
    out = []
    for i in range(n):
        price *= math.exp(rng.gauss(0.0002, 0.0025))
        closes.append(price)
        sma = lambda k: sum(closes[-k:]) / k if len(closes) >= k else None  # noqa: E731
        o = closes[-2] if len(closes) > 1 else price
        b = bar(symbol, start_ms + i * 60_000, round(price, 2), volume=float(rng.randint(8_000, 30_000)),
                sma_5=sma(5), sma_20=sma(20))
        out.append(replace_bar_open(b, o, rng))
    return out


def replace_bar_open(b, open_price: float, rng: random.Random):  # type: ignore[no-untyped-def]
    import msgspec

    hi = max(open_price, b.close) * (1 + abs(rng.gauss(0, 0.001)))
    lo = min(open_price, b.close) * (1 - abs(rng.gauss(0, 0.001)))
    return msgspec.structs.replace(b, open=round(open_price, 2), high=round(hi, 2), low=round(lo, 2))


def test_register_watch_rule_live_chart_and_alert(kafka_settings: Settings, tmp_path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    upgrade(url)
    settings = replace(kafka_settings, database_url=url)
    app = make_app(settings)
    server = live_server_factory(app)
    producer = EventProducer(settings)

    now_ms = int(time.time() * 1000)
    start_ms = (now_ms // 60_000 - 84) * 60_000  # history ends a few minutes ago; three live bars follow
    bars = history("AAPL", start_ms, 80, 189.0, seed=7)
    for b in bars:
        producer.produce(b)
    for b in history("MSFT", start_ms, 80, 412.0, seed=11) + history("NVDA", start_ms, 80, 131.0, seed=3):
        producer.produce(b)
    for b in bars[-12:]:
        producer.produce(prediction("AAPL", b.start_ms, b.close, round(b.close * 1.0015, 2)))
    producer.flush()

    shutdown = ShutdownFlag()
    threads = start_read_side(app, settings, shutdown)
    projected = session_factory(settings)
    deadline = time.monotonic() + 60
    while True:  # the history must be in the projections before the pages read it
        with projected() as s:
            if s.scalar(select(func.count()).select_from(models.BarRecord)) == 240:
                break
        assert time.monotonic() < deadline, "the projector did not write the seeded bars in time"
        shutdown.wait(0.1)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # register, then add symbols to the watchlist
            page.goto(f"{server.url}/register")
            page.fill("#email", "trader@example.com")
            page.fill("#password", "correct horse battery")
            page.click("button[type=submit]")
            confirm_in_browser(page, server, "trader@example.com")  # the link the sign-up mails, and its button
            expect(page).to_have_url(re.compile(r"/dashboard$"))
            for symbol in ("aapl", "MSFT", "NVDA"):
                page.fill("#add-symbol input[name=symbol]", symbol)
                page.click("#add-symbol button[type=submit]")
                expect(page.locator(f'#watchlist-table tr[data-symbol="{symbol.upper()}"]')).to_be_visible()
            page.fill("#add-symbol input[name=symbol]", "not a symbol")
            page.click("#add-symbol button[type=submit]")
            expect(page.locator("#add-symbol .error")).to_contain_text("ticker symbol")
            expect(page.locator('#watchlist-table tr[data-symbol="AAPL"] .price')).not_to_have_text("—")

            # a price rule, previewed on the stored history before it is saved
            level = round(max(b.close for b in bars) + 0.5, 2)
            page.goto(f"{server.url}/rules/new?symbol=AAPL")
            page.select_option("#preset", "price_above")
            page.fill("#value", "")
            page.click("#save")
            expect(page.locator('.field.invalid [data-field="condition.value"]')).to_have_count(1)  # server-side message
            page.fill("#value", str(level))
            page.fill("#name", f"AAPL above {level}")
            page.click("#preview-btn")
            expect(page.locator("#preview-count")).to_have_text("0")
            lower = round(bars[-1].close - 1, 2)
            page.fill("#value", str(lower))
            page.fill("#name", f"AAPL above {lower}")
            page.click("#preview-btn")
            expect(page.locator("#preview-count")).not_to_have_text(re.compile(r"^(–|0)$"))
            page.wait_for_selector("#preview-chart .main-svg")
            page.screenshot(path=str(SHOTS / "rule-form.png"), full_page=True)
            page.fill("#value", str(level))
            page.fill("#name", f"AAPL above {level}")
            page.click("#save")
            expect(page).to_have_url(re.compile(r"/rules/\d+\?saved=1$"))
            rule_id = int(re.search(r"/rules/(\d+)", page.url).group(1))
            expect(page.locator(".flash.ok")).to_be_visible()

            # the chart: history first, then live bars over Socket.IO without a reload
            page.goto(f"{server.url}/symbols/AAPL")
            chart = page.locator("#chart")
            expect(chart).to_have_attribute("data-bars", str(len(bars)))
            # the forecast is shown with its model's honest record (these test predictions carry no skill)
            expect(page.locator("#forecast-note")).to_contain_text("Forecast by model m1")
            expect(page.locator("#forecast-note")).to_contain_text("skill is unknown")
            expect(page.locator("#live-dot.on")).to_have_count(1)
            last = bars[-1]
            rng = random.Random(5)
            steps = [last.close + (level + 0.6 - last.close) * k / 3 for k in (1, 2, 3)]  # a rally through the level
            live = [replace_bar_open(bar("AAPL", last.start_ms + k * 60_000, round(c, 2), volume=31_000.0), prev, rng)
                    for k, (prev, c) in enumerate(zip([last.close, *steps], steps), start=1)]
            for i, b in enumerate(live):
                producer.produce(b)
                producer.produce(tick("AAPL", i, b.close, b.start_ms + 30_000))
                producer.flush()
                expect(chart).to_have_attribute("data-bars", str(len(bars) + i + 1))
            expect(page.locator("#last-price")).to_have_text(f"{live[-1].close:,.2f}")

            # simulated ticks cross the level; the engine (another stage) would emit this alert
            user_id = page.evaluate("Number(document.body.dataset.user)")
            cross_ms = live[-1].start_ms + 30_000
            producer.produce(tick("AAPL", 99, live[-1].close, cross_ms))
            fired = alert(rule_id, user_id, "AAPL", cross_ms, live[-1].close, level, trigger="tick:AAPL:99",
                          rule_name=f"AAPL above {level}")
            producer.produce(fired)
            producer.flush()
            expect(page.locator(f'#symbol-alerts tr[data-alert="{fired.id}"]')).to_be_visible()
            expect(page.locator(".toast")).to_contain_text("AAPL")
            expect(chart).to_have_attribute("data-alerts", "1")
            # a percent-move alert: its value (0.17 %) is no price, so its marker must sit on the
            # candles (the close of the bar it fired in), not near 0 where it would flatten them
            moved = msgspec.structs.replace(
                alert(rule_id, user_id, "AAPL", cross_ms - 20_000, 0.17, 0.1, trigger="tick:AAPL:98",
                      rule_name="AAPL up 0.1 % in 1 min"), series="price", op="moving_up_pct",
                message="AAPL up 0.17 % in 1 min")
            producer.produce(moved)
            producer.flush()
            expect(chart).to_have_attribute("data-alerts", "2")
            drawn = page.evaluate("""() => {
                const data = document.getElementById('chart').data;
                const candles = data.find((t) => t.type === 'candlestick');
                const fired = data.find((t) => t.name === 'Alert fired');
                return {low: Math.min(...candles.low), high: Math.max(...candles.high), y: fired.y};
            }""")
            assert len(drawn["y"]) == 2, drawn
            assert all(drawn["low"] <= y <= drawn["high"] for y in drawn["y"]), drawn
            page.wait_for_timeout(400)  # let Plotly finish drawing before the screenshot (not synchronisation)
            page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)

            page.goto(f"{server.url}/alerts")
            expect(page.locator(f'#alerts-table tr[data-alert="{fired.id}"]')).to_be_visible()
            page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)

            page.goto(f"{server.url}/dashboard")
            expect(page.locator("#recent-alerts tr[data-alert]")).to_have_count(2)  # the price and the percent alert
            expect(page.locator("#live-dot.on")).to_have_count(1)
            msft_row = page.locator('#watchlist-table tr[data-symbol="MSFT"]')
            ref = float(msft_row.get_attribute("data-ref"))
            producer.produce(tick("MSFT", 1, round(ref * 1.0123, 2), int(time.time() * 1000)))
            producer.flush()
            expect(msft_row.locator(".price")).to_have_text(f"{round(ref * 1.0123, 2):,.2f}")  # ticks live
            expect(msft_row.locator(".change")).to_have_text("+1.23 %")
            page.screenshot(path=str(SHOTS / "watchlist.png"), full_page=True)

            page.goto(f"{server.url}/overview")
            expect(page.locator("#daily-table tbody tr td a").first).to_be_visible()
            assert page.locator("#daily-table tbody tr").count() in (3, 6)  # three symbols, one day (two across midnight)
            page.wait_for_selector("#scatter-chart .main-svg")
            page.wait_for_timeout(300)  # let Plotly finish drawing before the screenshot (not synchronisation)
            page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
            assert errors == [], errors
            browser.close()
    finally:
        shutdown.set()
        for t in threads:
            t.join(30)

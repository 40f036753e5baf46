"""The live scoreboard through the real broker and database: forecasts scored whichever of a prediction
and its bar arrives first, rebuilt by replay to the same rows, served by the API and the gauges."""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import replace

from prometheus_client import REGISTRY
from sqlalchemy import select

from events import models
from events.contract import Prediction, prediction_id
from events.db import session_factory
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from predict import scoreboard as sb
from tests.web.conftest import Api, make_app
from tests.web.events_factory import bar
from tests.web.test_projector import T0
from web.admin import rebuild_projections
from web.projector import run_projector

BAR_MS = 60_000


def _close(symbol: str, i: int) -> float:
    """A zig-zag path with a drift: every bar moves, some up, some down."""
    return round(100.0 + 0.05 * i + (0.4 if (i * 7 + len(symbol)) % 3 else -0.3), 4)


def _prediction(symbol: str, i: int, half_width: float, model: str = "m1") -> Prediction:
    """The forecast made at bar ``i`` of bar ``i + 1``: half-way to the truth, with a band of +-half_width."""
    base, actual = _close(symbol, i), _close(symbol, i + 1)
    predicted = round(base + 0.5 * (actual - base), 4)
    return Prediction(id=prediction_id(symbol, T0 + i * BAR_MS, 1, model), ts=T0 + (i + 1) * BAR_MS, symbol=symbol,
                      base_start_ms=T0 + i * BAR_MS, bar_seconds=60, base_close=base, predicted_close=predicted,
                      predicted_return=math.log(predicted / base), lower=predicted * (1 - half_width),
                      upper=predicted * (1 + half_width), interval_level=0.8, model_version=model,
                      skill=0.12, holdout_n=400, skill_p=0.01, trained_bar_seconds=60, data_source="sim-history")


def _project(settings: Settings, sessions, group: str, expected: int) -> int:  # type: ignore[no-untyped-def]
    shutdown, seen = ShutdownFlag(), [0]

    def on_batch(n: int) -> None:
        seen[0] += n
        if seen[0] >= expected:
            shutdown.set()

    guard = threading.Timer(60, shutdown.set)
    guard.start()
    try:
        return run_projector(settings, sessions, shutdown, group_id=group, on_batch=on_batch,
                             redis_prefix=f"tbtest:{uuid.uuid4().hex[:8]}:")
    finally:
        guard.cancel()


def _scores(sessions) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    cols = list(models.ForecastScoreRecord.__table__.columns)
    with sessions() as s:
        return {row[0]: tuple(row) for row in s.execute(select(*cols)).all()}


def test_forecasts_are_scored_in_either_order_and_a_replay_rebuilds_the_same(kafka_settings: Settings,
                                                                              database_url: str) -> None:
    settings = replace(kafka_settings, database_url=database_url)
    sessions = session_factory(settings)
    producer = EventProducer(settings)
    n = 40
    # WIDE: live order, each prediction right after its base bar, before the bar it forecasts
    for i in range(n):
        producer.produce(bar("WIDE", T0 + i * BAR_MS, _close("WIDE", i), change_pct=(
            None if i == 0 else (_close("WIDE", i) / _close("WIDE", i - 1) - 1) * 100)))
        producer.produce(_prediction("WIDE", i, 0.02))
    # NARROW: the bars only, for now
    for i in range(n + 1):
        producer.produce(bar("NARROW", T0 + i * BAR_MS, _close("NARROW", i)))
    producer.flush()
    group = f"projector-{uuid.uuid4().hex[:8]}"
    assert _project(settings, sessions, group, 2 * n + n + 1) == 2 * n + n + 1
    first = _scores(sessions)
    assert len(first) == n - 1  # WIDE's last prediction waits for its bar; NARROW has no predictions yet
    assert prediction_id("WIDE", T0 + (n - 1) * BAR_MS, 1, "m1") not in first

    # now the other order: NARROW's predictions arrive after the bars they forecast (in an earlier batch),
    # and WIDE's last bar arrives after its prediction
    for i in range(n):
        producer.produce(_prediction("NARROW", i, 0.00001))  # a deliberately too-narrow 80 % interval
    producer.produce(bar("WIDE", T0 + n * BAR_MS, _close("WIDE", n)))
    producer.flush()
    assert _project(settings, sessions, group, n + 1) == n + 1
    live = _scores(sessions)
    assert len(live) == 2 * n
    wide = live[prediction_id("WIDE", T0 + (n - 1) * BAR_MS, 1, "m1")]
    cols = [c.name for c in models.ForecastScoreRecord.__table__.columns]
    row = dict(zip(cols, wide))
    assert row["target_start_ms"] == T0 + n * BAR_MS and row["actual_close"] == _close("WIDE", n)
    assert math.isclose(row["error"], _prediction("WIDE", n - 1, 0.02).predicted_close - _close("WIDE", n))
    assert row["covered"] and row["direction_hit"] and row["last_move_hit"] is not None

    # the figures, on read: the narrow band is reported far below its nominal 80 %
    app = make_app(settings)
    api = Api(app.test_client())
    api.register("scores@example.com")
    body = api.get("/api/symbols/narrow/scoreboard").get_json()
    assert body["symbol"] == "NARROW" and body["min_n"] == sb.MIN_N
    (m,) = body["models"]
    assert m["model_version"] == "m1" and m["live"]["n"] == n
    assert m["live"]["nominal_coverage"] == 0.8 and m["live"]["coverage"] < 0.1
    assert m["live"]["skill"] > 0.5  # half-way to the truth every bar: MSE a quarter of persistence's
    assert m["live"]["verdict"] == "too_few"  # 40 scores: too few to claim anything live
    assert m["live"]["coverage_flag"] is None  # ... or to flag the band (the page's sentence says it held 0 %)
    assert m["holdout"] == {**m["holdout"], "skill": 0.12, "p": 0.01, "n": 400, "significant": True}
    assert m["better_than_no_change"] is True  # the holdout backs it
    wide_board = api.get("/api/symbols/WIDE/scoreboard?window=10").get_json()
    assert wide_board["models"][0]["live"]["n"] == 10 and wide_board["models"][0]["live"]["coverage"] == 1.0
    assert wide_board["models"][0]["live"]["direction"]["accuracy"] == 1.0
    for bad in ("0", "x", "5001", "-1"):
        resp = api.get(f"/api/symbols/WIDE/scoreboard?window={bad}")
        assert resp.status_code == 422 and "window" in resp.get_json()["fields"], bad
    assert api.get("/api/symbols/bad%20symbol/scoreboard").status_code == 422
    assert api.get("/api/symbols/NOBODY/scoreboard").get_json()["models"] == []
    doc = api.get("/api/openapi.json").get_json()
    assert "window" in [p["name"] for p in doc["paths"]["/api/symbols/{symbol}/scoreboard"]["get"]["parameters"]]

    # the projector's gauges say the same
    labels = {"symbol": "NARROW", "model_version": "m1"}
    assert REGISTRY.get_sample_value("tickerbell_forecast_live_n", labels) == n
    assert REGISTRY.get_sample_value("tickerbell_forecast_live_coverage", labels) < 0.1
    assert REGISTRY.get_sample_value("tickerbell_forecast_nominal_coverage", labels) == 0.8
    assert REGISTRY.get_sample_value("tickerbell_forecast_live_skill", {**labels, "symbol": "WIDE"}) > 0.5

    # replayed from the topics (a fresh group reads them in its own order): the same rows
    with sessions() as s:  # damage the projection first, as a bad deploy might
        s.query(models.ForecastScoreRecord).update({"covered": False, "error": 0.0})
        s.commit()
    rebuild_projections(settings, sessions)
    assert _scores(sessions) == live


def test_the_symbol_page_shows_the_live_scoreboard(base_settings: Settings, tmp_path, live_server_factory) -> None:  # type: ignore[no-untyped-def]
    import os
    import re
    from pathlib import Path

    from playwright.sync_api import expect, sync_playwright

    from events.db import upgrade
    from tests.web.conftest import confirm_in_browser
    from web.projector import project

    url = f"sqlite:///{tmp_path / 'board.db'}"
    upgrade(url)
    settings = replace(base_settings, database_url=url)
    sessions = session_factory(settings)
    n = 150
    events: list = [bar("AAPL", T0 + i * BAR_MS, _close("AAPL", i), change_pct=None if i == 0 else
                        (_close("AAPL", i) / _close("AAPL", i - 1) - 1) * 100) for i in range(n + 1)]
    events += [_prediction("AAPL", i, 0.02, "v0002") for i in range(n)]  # half-way to the truth, every bar
    events += [_prediction("AAPL", i, 0.00001, "v0001") for i in range(n - 20)]  # an older, too-narrow model
    project(sessions, events)
    app = make_app(settings)
    server = live_server_factory(app)
    shots = Path(__file__).resolve().parents[2] / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") else "var") / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/register")
        page.fill("#email", "board@example.com")
        page.fill("#password", "correct horse battery")
        page.click("button[type=submit]")
        confirm_in_browser(page, server, "board@example.com")
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        page.goto(f"{server.url}/symbols/AAPL")
        page.click('#quick-range button[data-hours="720"]')  # the seeded bars are older than a day
        newest = page.locator('#scoreboard-rows tr[data-model="v0002"]')
        expect(newest).to_be_visible()
        expect(newest).to_have_attribute("data-verdict", "better")
        expect(newest.locator("td").nth(1)).to_have_text(str(n))
        expect(newest.locator("td").nth(5)).to_have_text("better than no change; its interval is too wide")  # held 100 %
        older = page.locator('#scoreboard-rows tr[data-model="v0001"]')
        expect(older).to_have_attribute("data-verdict", "better")  # the point forecasts are as good ...
        expect(older.locator("td").nth(3)).to_have_text("0 % (80 %)")  # ... but its band never held
        expect(older.locator("td").nth(5)).to_have_text("better than no change; its interval is too narrow")
        expect(newest.locator("td").nth(4)).to_contain_text("· last ")
        expect(newest.locator("td").nth(4)).not_to_contain_text("last —")
        note = page.locator("#forecast-note")
        expect(note).to_contain_text("Forecast by model v0002")
        expect(note).to_contain_text(f"Live, over the last {n} scored forecasts")
        expect(note).to_contain_text("better than no change on live data")
        page.wait_for_timeout(300)  # let Plotly finish drawing before the screenshot (not synchronisation)
        page.screenshot(path=str(shots / "symbol-scoreboard.png"), full_page=True)
        browser.close()
    assert errors == []

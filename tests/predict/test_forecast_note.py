"""The symbol page's forecast note (web/static/forecast.js), run in node on the predictions the
serving stage writes: it must never call the model better than no change unless the holdout or the
live skill is positive at p < 0.05 on at least 100 samples, and it says what the model was trained and
evaluated on and how its served forecasts have scored."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from events.contract import Prediction

FORECAST_JS = Path(__file__).resolve().parents[2] / "web" / "static" / "forecast.js"
NODE = shutil.which("node")  # installed by the set-up with npm (scripts/setup.sh): a missing one fails, not skips

BASE = Prediction(id="p1", ts=1_780_000_060_000, symbol="AAPL", base_start_ms=1_780_000_000_000, bar_seconds=60,
                  base_close=100.0, predicted_close=100.1, predicted_return=0.000999, lower=99.5, upper=100.6,
                  model_version="v0003", skill=0.02)
TRAINED = {"trained_bar_seconds": 60, "data_source": "sim-history", "trained_from_ms": 1_779_900_000_000,
           "trained_to_ms": 1_779_950_000_000, "holdout_from_ms": 1_779_950_060_000,
           "holdout_to_ms": 1_779_999_940_000, "holdout_n": 1440}


def note(p: Prediction | None, board: dict[str, Any] | None = None) -> str:
    """What the page shows for ``p`` (its JSON as the bridge sends it) beside the scoreboard ``board``
    (as GET /api/symbols/<s>/scoreboard answers); times as ``t<ms>``."""
    payload = None if p is None else msgspec.to_builtins(p)
    script = (f"const f = require({json.dumps(str(FORECAST_JS))});"
              f"process.stdout.write(f.note({json.dumps(payload)}, (ms) => 't' + ms, {json.dumps(board)}));")
    assert NODE is not None
    return subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True, timeout=30).stdout


def with_(**changes: Any) -> Prediction:
    return msgspec.structs.replace(BASE, **changes)


def test_better_only_with_positive_skill_at_p_below_005() -> None:
    assert "better than no change on the data" in note(with_(skill=0.02, skill_p=0.01, holdout_n=1440))
    assert "fewer than 100 bars back it" in note(with_(skill=0.02, skill_p=0.01, holdout_n=60))
    assert "better than no change on the data" not in note(with_(skill=0.02, skill_p=0.01))  # n unknown
    for p in (with_(skill=0.02, skill_p=0.2), with_(skill=0.02, skill_p=0.05), with_(skill=0.02)):
        text = note(p)
        assert "better than no change on the data" not in text and "not shown to be better" in text, text
    worse = note(with_(skill=-0.02, skill_p=0.001))  # significantly worse is not "better"
    assert "not better than assuming no change" in worse and "p = 0.001" in worse
    assert "skill is unknown" in note(with_(skill=None))


def test_the_note_says_bar_size_source_and_ranges() -> None:
    text = note(with_(skill=-0.0068, skill_p=0.0528, **TRAINED))
    assert text.startswith("Forecast by model v0003: next close 100.10, 80 % interval 99.50 to 100.60;")
    assert "skill against a no-change forecast -0.007, p = 0.053" in text
    assert ("Trained on 1-minute bars of sim-history from t1779900000000 to t1779950000000; evaluated on 1440 "
            "held-out bars from t1779950060000 to t1779999940000.") in text
    daily = note(with_(**{**TRAINED, "trained_bar_seconds": 86_400, "data_source": "offline"}))
    assert "Trained on 1-day bars of offline" in daily and "(not the 1-minute bars shown here)" in daily
    assert "Trained on" not in note(BASE)  # an event from before the model said so: nothing invented


def test_a_reloaded_prediction_keeps_what_a_live_one_of_its_model_said() -> None:
    """The REST history (the projection) has no provenance columns: after a live prediction of the same
    model the note still says what it was trained on; another model's record is not borrowed."""
    live = msgspec.to_builtins(with_(skill_p=0.2, **TRAINED))
    stored = {k: v for k, v in live.items() if k not in TRAINED and k != "skill_p"}
    other = {**stored, "model_version": "v0004"}
    script = (f"const f = require({json.dumps(str(FORECAST_JS))}); const t = (ms) => 't' + ms;"
              f"const out = [f.note({json.dumps(stored)}, t), f.note({json.dumps(live)}, t),"
              f" f.note({json.dumps(stored)}, t), f.note({json.dumps(other)}, t)];"
              "process.stdout.write(JSON.stringify(out));")
    assert NODE is not None
    before, with_live, after, other_model = json.loads(subprocess.run(
        [NODE, "-e", script], capture_output=True, text=True, check=True, timeout=30).stdout)
    assert "Trained on" not in before and "Trained on 1-minute bars of sim-history" in with_live
    assert after == with_live and "p = 0.200" in after
    assert "Trained on" not in other_model and other_model.startswith("Forecast by model v0004")
    assert note(None).startswith("No forecast yet")


def test_one_forecast_draws_a_band_from_its_base_close() -> None:
    """The first forecast on a symbol with history is alone on the chart: it must still be a band."""
    chart = FORECAST_JS.parent / "chart.js"
    p = {**msgspec.to_builtins(with_(**TRAINED)), "ts_ms": BASE.ts, "target_ms": BASE.base_start_ms + 120_000}
    state = {"symbol": "AAPL", "bars": [], "alerts": [], "predictions": [p]}
    script = (f"global.window = {{}}; require({json.dumps(str(chart))});"
              f"process.stdout.write(JSON.stringify(window.TBChart.traces({json.dumps(state)})));")
    assert NODE is not None
    traces = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True,
                                       timeout=30).stdout)
    band = {t["name"]: t for t in traces if t["name"] in ("Interval", "Forecast", "Forecast interval (80 %)")}
    assert band["Interval"]["y"] == [100.0, 100.6] and band["Forecast interval (80 %)"]["y"] == [100.0, 99.5]
    assert band["Forecast interval (80 %)"]["fill"] == "tonexty"
    assert band["Forecast"]["y"] == [100.0, 100.1] and band["Forecast"]["marker"]["size"] == [0, 4]
    # it opens at the base bar's end (the forecast was made there) and closes at the target bar's end
    x = band["Interval"]["x"]
    assert [int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000) for v in x] == \
        [BASE.base_start_ms + 60_000, BASE.base_start_ms + 120_000]


def _board(**live: Any) -> dict[str, Any]:
    base = {"n": 250, "skill": 0.04, "dm_p": 0.01, "dm_lag": 5, "coverage": 0.62, "nominal_coverage": 0.8,
            "direction": {"n": 240, "accuracy": 0.55, "always_up": 0.53, "last_move": 0.48}, "verdict": "better"}
    return {"symbol": "AAPL", "min_n": 100, "models": [{"model_version": "v0003", "live": {**base, **live}}]}


def test_the_live_record_is_said_and_can_back_the_claim() -> None:
    unproven = with_(skill=0.02, skill_p=0.3, holdout_n=1440)
    text = note(unproven, _board())
    assert "not shown to be better" in text  # the holdout does not back it ...
    assert ("Live, over the last 250 scored forecasts: skill +0.040, p = 0.010; the interval held 62 % of the "
            "time (it claims 80 %) — better than no change on live data.") in text  # ... the live record does
    assert "too few to tell (100 needed)" in note(unproven, _board(n=60, verdict="too_few"))
    assert "better than no change on live data" not in note(unproven, _board(n=60, verdict="too_few"))
    assert "— not shown to be better" in note(unproven, _board(dm_p=0.2, verdict="no_difference"))
    assert "— worse than assuming no change" in note(unproven, _board(skill=-0.05, verdict="worse"))
    assert "no served forecast of this model has been scored yet" in note(unproven, _board(n=0))
    other = {"models": [{**_board()["models"][0], "model_version": "v0009"}]}
    assert "Live" not in note(unproven, other)  # another model's record is not this one's


def test_scoreboard_cells() -> None:
    script = (f"const f = require({json.dumps(str(FORECAST_JS))});"
              f"process.stdout.write(JSON.stringify([f.scoreboardCells({json.dumps(_board()['models'][0])}),"
              f" f.scoreboardCells({{model_version: 'v1', live: {{n: 0, direction: {{}}, verdict: 'too_few'}}}})]));")
    assert NODE is not None
    full, empty = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True,
                                            timeout=30).stdout)
    assert full == ["v0003", "250", "+0.040 (p = 0.010)", "62 % (80 %)", "55 % · up 53 % · last 48 %",
                    "better than no change; its interval is too narrow"]
    assert empty == ["v1", "0", "—", "—", "—", "too few scored (100 needed)"]
    script = (f"const f = require({json.dumps(str(FORECAST_JS))}); const m = (c) => f.scoreboardCells("
              f"{{model_version: 'v', live: {{n: 300, skill: 0.0001, dm_p: 0.0001, coverage: c, nominal_coverage: 0.8, "
              f"direction: {{}}, verdict: 'better'}}}})[5];"
              "process.stdout.write(JSON.stringify([m(0.3), m(0.97), m(0.75)]));")
    narrow, wide, fine = json.loads(subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True,
                                                   timeout=30).stdout)
    assert narrow == "better than no change; its interval is too narrow"
    assert wide.endswith("too wide") and fine == "better than no change"
    assert "p < 0.001" in note(with_(skill=0.3, skill_p=0.0001, holdout_n=500))

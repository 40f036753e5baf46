"""The scheduled retrain's wiring: PREDICT_RETRAIN_* come from the typed settings loader, the beat schedule
holds the retrain at PREDICT_RETRAIN_INTERVAL_S (none when it is unset or 0), a bad value is a settings
error naming its variable, and the ``retrain`` process's app starts without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from events.settings import SettingsError, load_settings
from predict.tasks import make_celery, retrain_config

ROOT = Path(__file__).resolve().parents[2]


def _app(env: dict[str, str]):  # type: ignore[no-untyped-def]
    settings = load_settings(env)
    return make_celery(settings, retrain_config(settings))


def test_the_beat_schedule_holds_the_retrain_at_the_set_interval() -> None:
    app = _app({"PREDICT_RETRAIN_INTERVAL_S": "3600", "PREDICT_RETRAIN_QUEUE": "retrain-q"})
    entry = app.conf.beat_schedule["retrain"]
    assert entry["task"] == "predict.retrain" and "predict.retrain" in app.tasks
    assert entry["schedule"] == 3600.0 and entry["options"]["queue"] == "retrain-q"
    assert app.conf.task_default_queue == "retrain-q"


@pytest.mark.parametrize("env", [{}, {"PREDICT_RETRAIN_INTERVAL_S": ""}, {"PREDICT_RETRAIN_INTERVAL_S": "0"}])
def test_no_schedule_when_the_interval_is_unset_or_zero(env: dict[str, str]) -> None:
    assert _app(env).conf.beat_schedule == {}
    assert load_settings(env).predict_retrain_interval_s == 0


def test_the_settings_loader_reads_every_retrain_variable() -> None:
    s = load_settings({"PREDICT_RETRAIN_INTERVAL_S": "86400", "PREDICT_RETRAIN_BARS": "2000",
                       "PREDICT_RETRAIN_MIN_BARS": "300", "PREDICT_RETRAIN_MARGIN": "0.02",
                       "PREDICT_RETRAIN_ALPHA": "0.01", "PREDICT_RETRAIN_EPOCHS": "3"})
    c = retrain_config(s)
    assert (c.interval_s, c.bars, c.min_bars, c.margin, c.alpha, c.epochs) == (86_400, 2000, 300, 0.02, 0.01, 3)
    assert retrain_config(load_settings({})).epochs is None  # 0 / unset: the model's own default


@pytest.mark.parametrize("name,value", [
    ("PREDICT_RETRAIN_INTERVAL_S", "-1"), ("PREDICT_RETRAIN_INTERVAL_S", "daily"),
    ("PREDICT_RETRAIN_INTERVAL_S", "1e9"), ("PREDICT_RETRAIN_BARS", "10"), ("PREDICT_RETRAIN_MIN_BARS", "x"),
    ("PREDICT_RETRAIN_MARGIN", "x"), ("PREDICT_RETRAIN_MARGIN", "nan"), ("PREDICT_RETRAIN_ALPHA", "2"),
    ("PREDICT_RETRAIN_EPOCHS", "-3"), ("PREDICT_RETRAIN_QUEUE", "bad queue"),
])
def test_a_bad_value_is_a_settings_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


def test_the_retrain_app_loads_without_tensorflow(tmp_path: Path) -> None:
    """The worker imports TensorFlow inside the task only: starting it (and idling) stays light."""
    code = ("import sys, predict.tasks as t; t.app.loader.import_default_modules(); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PREDICT_RETRAIN_INTERVAL_S": "60",
                              "TICKERBELL_VAR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"

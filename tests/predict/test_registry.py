"""Versioned folders; promotion only when the skill is not worse; what `list`/`promote` say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from predict.__main__ import main
from predict.dataset import build_samples
from predict.pipeline import load_forecaster
from predict.registry import Registry, RegistryError, decide
from tests.predict.conftest import Trained, register


def test_decide() -> None:
    assert decide(-0.3, None).promoted
    assert decide(0.10, 0.10).promoted
    assert decide(0.11, 0.10).promoted
    refused = decide(0.09, 0.10)
    assert not refused.promoted and "0.0900" in refused.reason and "0.1000" in refused.reason


def test_first_model_is_promoted_and_loads_back_identically(trained: Trained, registry: Registry) -> None:
    meta = register(trained, registry.root)
    assert meta["version"] == "v0001" and meta["status"] == "promoted"
    assert registry.promoted_version() == "v0001"
    assert sorted(p.name for p in (registry.root / "v0001").iterdir()) == ["meta.json", "model.keras", "scalers.json"]
    forecaster, loaded_meta = load_forecaster(registry)
    assert loaded_meta["version"] == "v0001"
    s = build_samples(trained.series, trained.config.window)
    x, sigma = s.x[:50], s.sigma[:50]
    np.testing.assert_allclose(forecaster.predict_returns(x, sigma), trained.forecaster.predict_returns(x, sigma),
                               rtol=1e-5, atol=1e-9)


def test_a_worse_model_is_kept_but_not_promoted(trained: Trained, registry: Registry) -> None:
    register(trained, registry.root, skill=0.30)
    worse = register(trained, registry.root, skill=0.20)
    assert worse["version"] == "v0002" and worse["status"] == "not_promoted"
    assert "0.2000 < current +0.3000" in worse["status_reason"]
    assert registry.promoted_version() == "v0001"
    assert (registry.root / "v0002" / "model.keras").exists()
    # an equal or better one is promoted, and the old one retired
    better = register(trained, registry.root, skill=0.30)
    assert better["status"] == "promoted" and registry.promoted_version() == "v0003"
    assert registry.meta("v0001")["status"] == "retired"
    # promoting the worse one by hand is refused unless forced
    assert not registry.promote("v0002").promoted
    assert registry.promoted_version() == "v0003"
    assert registry.promote("v0002", force=True).promoted
    assert registry.promoted_version() == "v0002" and registry.meta("v0002")["status"] == "promoted"


def test_registry_errors(registry: Registry) -> None:
    assert registry.versions() == [] and registry.promoted_version() is None
    with pytest.raises(RegistryError, match="ensure-model"):
        load_forecaster(registry)
    with pytest.raises(RegistryError, match="no model version"):
        registry.promote("v0042")


def test_cli_list_and_promote(trained: Trained, registry: Registry, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODEL_REGISTRY", str(registry.root))
    assert main(["list"]) == 0
    assert "no models" in capsys.readouterr().out
    register(trained, registry.root, skill=0.3, bar_seconds=60)
    register(trained, registry.root, skill=0.1)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "* v0001" in out and "  v0002" in out and "not_promoted" in out and "+0.1000" in out
    assert re.search(r"\* v0001 +\S+ \S+ +60 +\+0\.3000", out) and re.search(r"  v0002 +\S+ \S+ +\? +\+0\.1000", out)
    assert main(["promote", "v0002"]) == 1
    assert "not promoted v0002" in capsys.readouterr().out
    assert main(["promote", "v0002", "--force"]) == 0
    assert json.loads((registry.root / "promoted.json").read_text())["version"] == "v0002"
    assert main(["promote", "v0009"]) == 1
    assert "no model version" in capsys.readouterr().err


def test_train_and_register_stores_everything(trained: Trained, registry: Registry) -> None:
    from predict.pipeline import train_and_register
    from tests.predict.conftest import TINY

    lines: list[str] = []
    meta = train_and_register(trained.series, registry, source="synthetic", config=TINY, holdout_fraction=0.25,
                              log=lines.append)
    assert any(line.startswith("epoch   1/") and "val_loss" in line for line in lines)
    assert meta["status"] == "promoted" and meta["skill"] > 0.25
    path: Path = registry.root / meta["version"]
    for name in ("model.keras", "scalers.json", "meta.json", "evaluation.md", "evaluation.json"):
        assert (path / name).exists(), name
    assert meta["features"] == list(TINY.features) and meta["code_version"]
    assert set(meta["data"]) == {"AAA", "BBB"} and meta["training_range"]["holdout_from"]
    # what every served Prediction repeats: bar size, source, training and holdout range, n, DM p
    on, split = meta["trained_on"], meta["split"]
    assert on["bar_seconds"] == 60 and on["data_source"] == "synthetic" and on["skill"] == meta["skill"]
    assert on["trained_from_ms"] == min(int(s.start_ms[0]) for s in trained.series)
    assert (on["trained_to_ms"], on["holdout_from_ms"], on["holdout_to_ms"]) == \
        (split["val_to_ms"], split["test_from_ms"], split["test_to_ms"])
    assert on["trained_to_ms"] < on["holdout_from_ms"] and on["holdout_n"] == split["n_test"]
    assert on["skill_p"] < 0.05  # an AR(1) is predictable: the skill is no chance
    assert any("DM p" in line and "60 s bars from synthetic" in line for line in lines)
    assert "persistence" in (path / "evaluation.md").read_text()


def test_a_model_of_another_bar_size_is_promoted_only_by_force(trained: Trained, registry: Registry) -> None:
    register(trained, registry.root, skill=-0.01, bar_seconds=86_400)  # a daily model
    minute = register(trained, registry.root, skill=0.5, bar_seconds=60)
    assert minute["status"] == "not_promoted" and registry.promoted_version() == "v0001"
    assert "60 s bars" in minute["status_reason"] and "86400 s bars" in minute["status_reason"]
    decision = registry.promote("v0002", force=True, why="BAR_SECONDS is 60")
    assert decision.promoted and registry.promoted_version() == "v0002"
    assert registry.meta("v0002")["status_reason"] == "forced: BAR_SECONDS is 60"
    # models of the same bar size still compare by skill
    assert register(trained, registry.root, skill=0.4, bar_seconds=60)["status"] == "not_promoted"
    assert register(trained, registry.root, skill=0.6, bar_seconds=60)["status"] == "promoted"


def test_a_registry_file_that_is_not_a_json_object_is_a_registry_error(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    (registry.root / "v0001").mkdir(parents=True)
    (registry.root / "v0001" / "meta.json").write_text('["not", "an", "object"]')
    (registry.root / "promoted.json").write_text("42")
    with pytest.raises(RegistryError, match="meta.json holds no JSON object"):
        registry.meta("v0001")
    with pytest.raises(RegistryError, match="promoted.json holds no JSON object"):
        registry.promoted()

"""gunicorn.conf.py (read by gunicorn from the working directory under the Procfile and the Dockerfile)
refuses to listen on an open address with a weak SECRET_KEY."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]


def starting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bind: list[str], **env: str) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("TICKERBELL_ENV", raising=False)
    monkeypatch.setenv("PUBLIC_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("TICKERBELL_VAR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    conf["on_starting"](SimpleNamespace(cfg=SimpleNamespace(bind=bind), log=logging.getLogger("gunicorn.test")))


def test_procfile_web_runs_gunicorn_from_the_root() -> None:
    from tests.e2e.stack import procfile

    assert procfile()["web"].startswith("exec gunicorn ")
    assert (ROOT / "gunicorn.conf.py").exists()


@pytest.mark.parametrize("key", ["secret", "change-me-in-production", "dev-only-insecure-secret-key", "tooshort"])
def test_an_open_bind_with_a_weak_key_does_not_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        starting(monkeypatch, tmp_path, ["0.0.0.0:5000"], SECRET_KEY=key)
    assert exc.value.code == 2
    assert "SECRET_KEY cannot sign sessions of a server listening on 0.0.0.0:5000" in caplog.text
    assert "tooshort" not in caplog.text  # the key itself is never logged


def test_open_bind_with_the_local_random_key_or_a_strong_one_starts(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    starting(monkeypatch, tmp_path, ["0.0.0.0:5000"])  # `make run`: no SECRET_KEY, a random one in var/
    starting(monkeypatch, tmp_path, ["0.0.0.0:5000"], SECRET_KEY="Zq8-vN3xL7mR2tK9wB4yH6jD1fS5pA0c")
    starting(monkeypatch, tmp_path, ["127.0.0.1:5000"], SECRET_KEY="secret")

"""Settings come from the environment only, with defaults; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.settings import (Secret, SettingsError, load_settings, normalise_database_url, redact_url,
                             refuse_weak_key_on_open_binds, weak_secret_key)


def test_embedded_defaults() -> None:
    s = load_settings({})
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/tickerbell.db")
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert s.topic("ticks") == "ticks"


def test_heroku_style_urls() -> None:
    s = load_settings({
        "DATABASE_URL": "postgres://u:pw@db.example.com:5432/app",
        "REDIS_URL": "rediss://:pw@redis.example.com:6380",
        "KAFKA_URL": "kafka+ssl://k1.example.com:9096,kafka+ssl://k2.example.com:9096",
        "KAFKA_USERNAME": "user", "KAFKA_PASSWORD": "hunter2", "KAFKA_TOPIC_PREFIX": "acme.",
    })
    assert s.database_url == "postgresql+psycopg://u:pw@db.example.com:5432/app"
    assert s.kafka_bootstrap_servers == "k1.example.com:9096,k2.example.com:9096"
    assert s.kafka_security_protocol == "SASL_SSL"
    assert s.kafka_common()["sasl.password"] == "hunter2"
    assert s.topic("ticks") == "acme.ticks"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    "name, value",
    [
        ("PORT", "eighty"), ("PORT", "70000"), ("BAR_SECONDS", "0"), ("KAFKA_BOOTSTRAP_SERVERS", "nohostport"),
        ("REDIS_URL", "http://x"), ("DATABASE_URL", "mysql://x/y"), ("ALLOW_PRIVATE_WEBHOOKS", "maybe"),
        ("KAFKA_SECURITY_PROTOCOL", "TLS"), ("SMTP_URL", "mailto:x@y"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name.split("_")[0]):
        load_settings({name: value})


STRONG = "Zq8-vN3xL7mR2tK9wB4yH6jD1fS5pA0c"


@pytest.mark.parametrize("key", [
    None, "dev-only-insecure-secret-key", "change-me-in-production", "secret", "changeme", "CHANGEME",
    "s3cr3t", "a-random-looking-but-short-key", "x" * 40, "abababababababababababababababab",
])
@pytest.mark.parametrize("env", [{"TICKERBELL_ENV": "production"}, {"PUBLIC_URL": "https://tb.example.com"},
                                 {"PUBLIC_URL": "http://10.0.0.5:5000"}])
def test_a_reachable_deployment_refuses_a_weak_secret_key(env: dict[str, str], key: str | None) -> None:
    """Anyone who knows (or can guess) the key signs a session cookie that logs in as any user."""
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({**env, **({"SECRET_KEY": key} if key is not None else {})})
    assert load_settings({**env, "SECRET_KEY": STRONG}).secret_key.get() == STRONG


@pytest.mark.parametrize("public_url", ["http://127.0.0.1:5000", "http://localhost:8000", "http://[::1]:5000"])
def test_loopback_development_gets_a_random_key_kept_in_var(public_url: str, tmp_path: Path) -> None:
    """No key written in the code signs anyone's sessions: an unset SECRET_KEY on loopback is a random
    key made once under TICKERBELL_VAR (every process of the local stack reads the same one)."""
    env = {"PUBLIC_URL": public_url, "TICKERBELL_VAR": str(tmp_path / "a")}
    key = load_settings(env).secret_key.get()
    assert weak_secret_key(key) is None and key != "dev-only-insecure-secret-key"
    assert load_settings(env).secret_key.get() == key
    assert (tmp_path / "a" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert load_settings({**env, "TICKERBELL_VAR": str(tmp_path / "b")}).secret_key.get() != key
    # an explicit key is used as it is on loopback (a weak one is refused on open binds, below)
    assert load_settings({**env, "SECRET_KEY": "secret"}).secret_key.get() == "secret"
    assert weak_secret_key("dev-only-insecure-secret-key") and weak_secret_key(STRONG) is None


@pytest.mark.parametrize("binds, refused", [
    (["0.0.0.0:5000"], True), (["[::]:8000"], True), (["192.168.1.20:5000"], True),
    (["127.0.0.1:5000", "0.0.0.0:5001"], True), (["127.0.0.1:5000"], False), (["localhost:5000"], False),
    (["[::1]:5000"], False), (["unix:/tmp/tickerbell.sock"], False),
])
def test_a_server_on_an_open_address_refuses_a_weak_key(binds: list[str], refused: bool) -> None:
    weak = load_settings({"SECRET_KEY": "change-me-in-production"})
    if refused:
        with pytest.raises(SettingsError, match="SECRET_KEY cannot sign sessions of a server listening on"):
            refuse_weak_key_on_open_binds(weak, binds)
    else:
        refuse_weak_key_on_open_binds(weak, binds)
    refuse_weak_key_on_open_binds(load_settings({"SECRET_KEY": STRONG}), binds)


def test_trust_proxy_hops() -> None:
    assert load_settings({}).trust_proxy_hops == 0
    assert load_settings({"TRUST_PROXY_HOPS": "1"}).trust_proxy_hops == 1
    with pytest.raises(SettingsError, match="TRUST_PROXY_HOPS"):
        load_settings({"TRUST_PROXY_HOPS": "yes"})


def test_secrets_never_show() -> None:
    s = load_settings({"SECRET_KEY": "topsecretvalue", "KAFKA_PASSWORD": "kpass", "SMTP_URL": "smtp://u:mailpw@h:25"})
    text = repr(s) + str(s)
    for secret in ("topsecretvalue", "kpass", "mailpw"):
        assert secret not in text
    assert repr(Secret("x")) == "Secret('**********')"
    assert redact_url("smtp://u:mailpw@h:25") == "smtp://u:***@h:25"


@pytest.mark.parametrize("name", ["ALLOW_PRIVATE_WEBHOOKS", "ALERTS_DIGEST"])
@pytest.mark.parametrize("value", ["yes", "ture", "on", "enabled"])
def test_booleans_are_strict(name: str, value: str) -> None:
    """A mistyped boolean is refused by name, never read as false."""
    from alerts.retry import load_notify_config

    load = load_notify_config if name.startswith("ALERTS_") else load_settings
    with pytest.raises(SettingsError, match=f"^{name}: must be true or false"):
        load({name: value})
    for text, expected in (("true", True), ("TRUE", True), ("1", True), ("false", False), ("0", False)):
        assert getattr(load({name: text}), name.removeprefix("ALERTS_").lower()) is expected


def test_every_bad_variable_is_named_in_one_line_and_secrets_never_show() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"PORT": "eighty", "BAR_SECONDS": "0", "SMTP_URL": "mailto://u:mailpw@h",
                       "DATABASE_URL": "mysql://u:dbpw@h/x"})
    text = str(caught.value)
    assert "\n" not in text
    for name in ("PORT", "BAR_SECONDS", "SMTP_URL", "DATABASE_URL"):
        assert f"{name}: " in text
    assert "'eighty'" in text and "mailpw" not in text and "dbpw" not in text and "u:***@h" in text


def test_engine_section_and_its_defaults() -> None:
    from alerts.config import load_engine_settings

    assert load_engine_settings({}).engine_transactional_id == "alerts-engine"
    assert load_engine_settings({"DYNO": "alerts.2"}).engine_transactional_id == "alerts-engine-alerts.2"
    engine = load_engine_settings({"ALERTS_TRANSACTIONAL_ID": "tx", "ALERTS_STALE_AFTER_S": "30"})
    assert (engine.engine_transactional_id, engine.stale_after_s) == ("tx", 30)
    with pytest.raises(SettingsError, match="^ALERTS_STALE_AFTER_S: Input should be a valid integer"):
        load_engine_settings({"ALERTS_STALE_AFTER_S": "2m"})


def test_settings_are_frozen_and_replace_validates_again() -> None:
    from dataclasses import FrozenInstanceError, replace

    from pydantic import ValidationError

    s = load_settings({})
    with pytest.raises(FrozenInstanceError):
        s.port = 1  # type: ignore[misc]
    assert replace(s, kafka_partitions=2).kafka_partitions == 2
    with pytest.raises(ValidationError):
        replace(s, kafka_partitions=0)
    assert load_settings({"MODEL_REGISTRY": "/srv/models"}).registry_root == Path("/srv/models")
    assert load_settings({"TICKERBELL_VAR": "/srv/var"}).registry_root == Path("/srv/var/models")


def test_heroku_kafka_url_errors_name_both_variables() -> None:
    with pytest.raises(SettingsError, match="^KAFKA_BOOTSTRAP_SERVERS or KAFKA_URL: must be host:port"):
        load_settings({"KAFKA_URL": "nohost"})

"""Process settings, read once from the environment (12-factor).

Every process calls :func:`load_settings` at start and passes the frozen
:class:`Settings` down. A bad value raises :class:`SettingsError` naming the
variable, so the process fails at start instead of at first use.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


class SettingsError(ValueError):
    """A configuration variable is missing or malformed."""


class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def normalise_database_url(url: str) -> str:
    """Heroku's ``postgres://`` to SQLAlchemy's psycopg 3 driver URL."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


# Signs development sessions only: load_settings refuses it wherever others can reach the app.
DEV_SECRET_KEY = "dev-only-insecure-secret-key"


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_username: str = ""
    kafka_password: Secret = field(default_factory=lambda: Secret(""))
    kafka_topic_prefix: str = ""
    kafka_partitions: int = 6
    kafka_replication_factor: int = 1
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = f"sqlite:///{VAR / 'tickerbell.db'}"
    secret_key: Secret = field(default_factory=lambda: Secret(DEV_SECRET_KEY))
    smtp_url: Secret = field(default_factory=lambda: Secret("smtp://127.0.0.1:2525"))
    mail_from: str = "Tickerbell <alerts@tickerbell.local>"
    public_url: str = "http://127.0.0.1:5000"
    port: int = 5000
    #: reverse proxies in front of the web app whose X-Forwarded-* headers are trusted (Heroku: 1)
    trust_proxy_hops: int = 0
    bar_seconds: int = 60
    #: symbols ingest always publishes, whoever watches them (the operator's floor)
    ingest_symbols: tuple[str, ...] = ()
    #: closed bars of history backfilled for a newly watched symbol (0: none)
    ingest_history_bars: int = 300
    allow_private_webhooks: bool = False
    log_level: str = "INFO"
    metrics_port: int = 0
    var_dir: Path = VAR
    #: the scheduled retrain (``predict.tasks``): seconds between retrains, 0 for none
    predict_retrain_interval_s: int = 0
    #: the newest bars per symbol it trains and evaluates on; a symbol with fewer than min_bars is left out
    predict_retrain_bars: int = 5000
    predict_retrain_min_bars: int = 400
    #: the candidate's MSE may exceed the serving model's by this fraction (non-inferiority margin) ...
    predict_retrain_margin: float = 0.01
    #: ... shown at this one-sided level
    predict_retrain_alpha: float = 0.05
    #: training epochs, 0 for the model's default
    predict_retrain_epochs: int = 0
    predict_retrain_queue: str = "tickerbell-predict"

    def topic(self, name: str) -> str:
        """The deployed name of a contract topic (a prefix isolates tenants or tests)."""
        return f"{self.kafka_topic_prefix}{name}"

    def kafka_common(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings every client shares (bootstrap and security)."""
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_username:
            conf["sasl.mechanisms"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_username
            conf["sasl.password"] = self.kafka_password.get()
        return conf


def env_int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer variable in ``lo..hi`` (``default`` when unset or empty)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """A number in ``lo..hi`` (``default`` when unset or empty)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:  # a NaN fails this too
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(name) or default
    scheme = urlsplit(raw).scheme
    if scheme not in schemes:
        raise SettingsError(f"{name} must be a URL with scheme {'/'.join(schemes)}, got scheme {scheme!r}")
    return raw


def _queue(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", raw):
        raise SettingsError(f"{name} must be a queue name (letters, digits, . _ : -), got {raw!r}")
    return raw


def _symbols(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    from events.contract import SYMBOL_RE

    raw = [s.strip().upper() for s in env.get(name, "").split(",") if s.strip()]
    bad = [s for s in raw if not SYMBOL_RE.match(s)]
    if bad:
        raise SettingsError(f"{name} must be comma-separated ticker symbols, got {bad[0]!r}")
    return tuple(dict.fromkeys(raw))


MIN_SECRET_KEY_CHARS = 32
# Values people paste from examples and tutorials: anyone can sign a session cookie with them.
WELL_KNOWN_SECRET_KEYS = frozenset({
    DEV_SECRET_KEY, "change-me-in-production", "changeme", "change-me", "change_me", "secret", "secret-key",
    "secret_key", "secretkey", "mysecret", "my-secret-key", "super-secret", "supersecret", "password", "dev",
    "development", "test", "testing", "default", "flask", "tickerbell", "your-secret-key", "replace-me",
    "please-change-me", "insecure", "notsecret", "xxx",
})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def weak_secret_key(key: str) -> str | None:
    """Why ``key`` cannot sign sessions outside a loopback-only development setup (None: it can)."""
    if key.strip().lower() in WELL_KNOWN_SECRET_KEYS or key in WELL_KNOWN_SECRET_KEYS:
        return "it is a well-known example value"
    if len(key) < MIN_SECRET_KEY_CHARS:
        return f"it is shorter than {MIN_SECRET_KEY_CHARS} characters"
    if len(set(key)) < 8:
        return "it repeats too few distinct characters"
    return None


def refuse_weak_secret_key(key: str, where: str) -> None:
    """Raise :class:`SettingsError` when ``key`` cannot sign the sessions of ``where``."""
    reason = "it is not set" if not key else weak_secret_key(key)
    if reason:
        raise SettingsError(
            f"SECRET_KEY cannot sign sessions of {where}: {reason}; set it to a long random value, e.g. the "
            "output of `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )


def refuse_weak_key_on_open_binds(settings: Settings, binds: list[str]) -> None:
    """Raise :class:`SettingsError` when a web server about to listen on an address others can reach
    (``0.0.0.0:5000``, ``[::]:80``; not loopback, not ``unix:`` sockets) has a weak key, whatever
    PUBLIC_URL says (`make run` on a laptop listens on every interface)."""
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        host = bind.rsplit(":", 1)[0] if bind.count(":") == 1 or bind.startswith("[") else bind
        host = host.strip("[]")
        if host not in LOOPBACK_HOSTS:
            refuse_weak_secret_key(settings.secret_key.get(), f"a server listening on {bind}")


def local_secret_key(var_dir: Path) -> str:
    """The key of a loopback development setup without SECRET_KEY: random, made once and kept in
    ``var/secret_key``, so the processes of one local stack share it and, unlike a key written in
    the code, nobody else knows it (the development key only when var/ cannot be written)."""
    path = var_dir / "secret_key"
    try:
        if not path.exists():
            var_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".secret_key.{os.getpid()}")
            tmp.write_text(secrets.token_urlsafe(48) + "\n")
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # atomic: of processes starting together, one writes the key
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        key = path.read_text().strip()
    except OSError:
        return DEV_SECRET_KEY
    return key if weak_secret_key(key) is None else DEV_SECRET_KEY


def serves_only_loopback(env: Mapping[str, str], public_url: str) -> bool:
    """Whether this is a development setup that only this machine can reach.

    The settings cannot see the web server's bind address, so the public URL
    stands for it: a deployment reachable by others has a non-loopback
    ``PUBLIC_URL`` (links in notifications must work for its users) or says
    ``TICKERBELL_ENV=production`` (Heroku's app.json and docker-compose.yml do).
    """
    if env.get("TICKERBELL_ENV", "development") == "production":
        return False
    return (urlsplit(public_url).hostname or "") in LOOPBACK_HOSTS


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise :class:`SettingsError` on the first bad one."""
    env = os.environ if env is None else env
    d = Settings()
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or env.get("KAFKA_URL") or d.kafka_bootstrap_servers
    bootstrap = ",".join(b.split("://", 1)[-1] for b in bootstrap.split(","))  # Heroku's kafka+ssl://h:p
    for hostport in bootstrap.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port], got {bootstrap!r}")
    username = env.get("KAFKA_USERNAME", "")
    protocol = env.get("KAFKA_SECURITY_PROTOCOL") or ("SASL_SSL" if username else "PLAINTEXT")
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {protocol!r}")
    database_url = normalise_database_url(env.get("DATABASE_URL") or d.database_url)
    if not database_url.startswith(("sqlite", "postgresql")):
        raise SettingsError("DATABASE_URL must be a sqlite:// or postgres(ql):// URL")
    var_dir = Path(env.get("TICKERBELL_VAR") or d.var_dir)
    public_url = _url(env, "PUBLIC_URL", d.public_url, ("http", "https")).rstrip("/")
    secret_key = env.get("SECRET_KEY", "")
    if not serves_only_loopback(env, public_url):
        refuse_weak_secret_key(secret_key, "a deployment others can reach")
    elif not secret_key:
        secret_key = local_secret_key(var_dir)
    return Settings(
        kafka_bootstrap_servers=bootstrap,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=env.get("KAFKA_SASL_MECHANISM", d.kafka_sasl_mechanism),
        kafka_username=username,
        kafka_password=Secret(env.get("KAFKA_PASSWORD", "")),
        kafka_topic_prefix=env.get("KAFKA_TOPIC_PREFIX", ""),
        kafka_partitions=env_int(env, "KAFKA_PARTITIONS", d.kafka_partitions, 1, 1000),
        kafka_replication_factor=env_int(env, "KAFKA_REPLICATION_FACTOR", d.kafka_replication_factor, 1, 10),
        redis_url=_url(env, "REDIS_URL", d.redis_url, ("redis", "rediss", "unix")),
        database_url=database_url,
        secret_key=Secret(secret_key),
        smtp_url=Secret(_url(env, "SMTP_URL", d.smtp_url.get(), ("smtp", "smtps", "smtp+starttls"))),
        mail_from=env.get("MAIL_FROM", d.mail_from),
        public_url=public_url,
        port=env_int(env, "PORT", d.port, 1, 65535),
        trust_proxy_hops=env_int(env, "TRUST_PROXY_HOPS", d.trust_proxy_hops, 0, 5),
        bar_seconds=env_int(env, "BAR_SECONDS", d.bar_seconds, 1, 86_400),
        ingest_symbols=_symbols(env, "INGEST_SYMBOLS"),
        ingest_history_bars=env_int(env, "INGEST_HISTORY_BARS", d.ingest_history_bars, 0, 20_000),
        allow_private_webhooks=_bool(env, "ALLOW_PRIVATE_WEBHOOKS", d.allow_private_webhooks),
        log_level=env.get("LOG_LEVEL", d.log_level).upper(),
        metrics_port=env_int(env, "METRICS_PORT", d.metrics_port, 0, 65535),
        var_dir=var_dir,
        predict_retrain_interval_s=env_int(env, "PREDICT_RETRAIN_INTERVAL_S", d.predict_retrain_interval_s,
                                           0, 365 * 86_400),
        predict_retrain_bars=env_int(env, "PREDICT_RETRAIN_BARS", d.predict_retrain_bars, 100, 10_000_000),
        predict_retrain_min_bars=env_int(env, "PREDICT_RETRAIN_MIN_BARS", d.predict_retrain_min_bars, 50, 10_000_000),
        predict_retrain_margin=_float(env, "PREDICT_RETRAIN_MARGIN", d.predict_retrain_margin, 0.0, 1.0),
        predict_retrain_alpha=_float(env, "PREDICT_RETRAIN_ALPHA", d.predict_retrain_alpha, 1e-6, 0.5),
        predict_retrain_epochs=env_int(env, "PREDICT_RETRAIN_EPOCHS", d.predict_retrain_epochs, 0, 1000),
        predict_retrain_queue=_queue(env, "PREDICT_RETRAIN_QUEUE", d.predict_retrain_queue),
    )

"""Process settings, read once from the environment (12-factor), typed by pydantic.

Every process calls :func:`load_settings` at start and passes the frozen
:class:`Settings` down; a stage with settings of its own declares them the
same way (:class:`stream.config.StreamSettings`, :class:`alerts.retry.NotifyConfig`,
:class:`alerts.config.EngineSettings`) and reads them with :func:`load_section`.

A setting is declared once: a field of one of these frozen pydantic dataclasses,
its type and bounds on the annotation, its variable the field's name in capitals
(after the section's ``ENV_PREFIX``) unless ``validation_alias`` names it.
pydantic-settings reads the environment; pydantic validates. A bad value raises
:class:`SettingsError` with one line naming every bad variable and what is wrong
with it (never a secret's value), so the process stops at start, not at first use.
Being dataclasses, the settings work with :func:`dataclasses.replace` (validated again).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, AliasChoices, BeforeValidator, ConfigDict, Field, PlainValidator, SecretStr
from pydantic import ValidationError, create_model
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"

__all__ = ["DEV_SECRET_KEY", "ROOT", "VAR", "Secret", "Settings", "SettingsError", "load_section", "load_settings",
           "normalise_database_url", "redact_url", "refuse_weak_key_on_open_binds", "refuse_weak_secret_key",
           "weak_secret_key"]


class SettingsError(ValueError):
    """A configuration variable is missing or malformed (the message names it)."""


class Secret(SecretStr):
    """A string that never shows itself in reprs, logs or tracebacks (pydantic's ``SecretStr``)."""

    def get(self) -> str:
        return self.get_secret_value()


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


# --- value types: the checks every section shares --------------------------------------------------

def _strict_bool(value: object) -> bool:
    """``true``/``false``/``1``/``0`` (any case); anything else (``yes``, ``ture``) is refused, not false."""
    if isinstance(value, bool):
        return value
    low = str(value).strip().lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise ValueError("must be true or false (or 1/0)")


def _schemes(*schemes: str) -> AfterValidator:
    def check(value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        scheme = urlsplit(text).scheme
        if scheme not in schemes:
            raise ValueError(f"must be a URL with scheme {'/'.join(schemes)}, got scheme {scheme!r}")
        return value
    return AfterValidator(check)


def _comma_list(value: object) -> object:
    return tuple(p.strip() for p in value.split(",") if p.strip()) if isinstance(value, str) else value


def _bootstrap(value: str) -> str:
    value = ",".join(b.split("://", 1)[-1] for b in value.split(","))  # Heroku's kafka+ssl://h:p
    for hostport in value.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be host:port[,host:port]")
    return value


def _database(value: str) -> str:
    if not value.startswith(("sqlite", "postgresql")):
        raise ValueError("must be a sqlite:// or postgres(ql):// URL")
    return value


def _symbols(value: tuple[str, ...]) -> tuple[str, ...]:
    from events.contract import SYMBOL_RE

    upper = [s.upper() for s in value]
    bad = [s for s in upper if not SYMBOL_RE.match(s)]
    if bad:
        raise ValueError(f"must be comma-separated ticker symbols, got {bad[0]!r}")
    return tuple(dict.fromkeys(upper))


StrictBool = Annotated[bool, PlainValidator(_strict_bool)]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
SecondsList = Annotated[tuple[Seconds, ...], NoDecode, BeforeValidator(_comma_list)]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]
#: the config of every settings dataclass: frozen, fields given by name (replace) or by variable (the loader)
SECTION = ConfigDict(validate_by_name=True, validate_by_alias=True, arbitrary_types_allowed=True)

# Signs development sessions only: load_settings refuses it wherever others can reach the app.
DEV_SECRET_KEY = "dev-only-insecure-secret-key"


@dataclass(frozen=True, config=SECTION)
class Settings:
    """What every process shares. Variable: the field's name in capitals unless an alias says."""

    ENV_PREFIX: ClassVar[str] = ""
    kafka_bootstrap_servers: Annotated[str, AfterValidator(_bootstrap)] = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_URL"))
    #: PLAINTEXT, or SASL_SSL when KAFKA_USERNAME is set (see load_settings)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_username: str = ""
    kafka_password: Secret = Field(default_factory=lambda: Secret(""))
    kafka_topic_prefix: str = ""
    kafka_partitions: Annotated[int, Field(ge=1, le=1000)] = 6
    kafka_replication_factor: Annotated[int, Field(ge=1, le=10)] = 1
    redis_url: Annotated[str, _schemes("redis", "rediss", "unix")] = "redis://127.0.0.1:6379/0"
    database_url: Annotated[str, BeforeValidator(normalise_database_url), AfterValidator(_database)] = \
        f"sqlite:///{VAR / 'tickerbell.db'}"
    secret_key: Secret = Field(default_factory=lambda: Secret(DEV_SECRET_KEY))
    smtp_url: Annotated[Secret, _schemes("smtp", "smtps", "smtp+starttls")] = Field(
        default_factory=lambda: Secret("smtp://127.0.0.1:2525"))
    mail_from: str = "Tickerbell <alerts@tickerbell.local>"
    public_url: Annotated[str, _schemes("http", "https"), AfterValidator(lambda u: u.rstrip("/"))] = \
        "http://127.0.0.1:5000"
    port: Annotated[int, Field(ge=1, le=65535)] = 5000
    #: reverse proxies in front of the web app whose X-Forwarded-* headers are trusted (Heroku: 1)
    trust_proxy_hops: Annotated[int, Field(ge=0, le=5)] = 0
    bar_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    #: symbols ingest always publishes, whoever watches them (the operator's floor)
    ingest_symbols: Annotated[CommaList, AfterValidator(_symbols)] = ()
    #: closed bars of history backfilled for a newly watched symbol (0: none)
    ingest_history_bars: Annotated[int, Field(ge=0, le=20_000)] = 300
    allow_private_webhooks: StrictBool = False
    #: the Slack Web API that ``slack_bot`` channels call (a test points it at a local fake Slack)
    slack_api_url: Annotated[str, _schemes("http", "https"), AfterValidator(lambda u: u.rstrip("/"))] = \
        "https://slack.com/api"
    #: the operator CLI's password for ``create-user`` (python -m web admin), never logged
    tickerbell_password: Secret = Field(default_factory=lambda: Secret(""), validation_alias="TICKERBELL_PASSWORD")
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"],
                         BeforeValidator(lambda v: str(v).strip().upper())] = "INFO"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    var_dir: Path = Field(default=VAR, validation_alias="TICKERBELL_VAR")
    #: production refuses a weak SECRET_KEY whatever PUBLIC_URL says (app.json, docker-compose.yml)
    environment: Literal["development", "production"] = Field(default="development",
                                                              validation_alias="TICKERBELL_ENV")
    #: the model registry of predict (default ``var_dir / "models"``, see :attr:`registry_root`)
    model_registry: Path | None = Field(default=None, validation_alias="MODEL_REGISTRY")
    #: the scheduled retrain (``predict.tasks``): seconds between retrains, 0 for none
    predict_retrain_interval_s: Annotated[int, Field(ge=0, le=365 * 86_400)] = 0
    #: the newest bars per symbol it trains and evaluates on; a symbol with fewer than min_bars is left out
    predict_retrain_bars: Annotated[int, Field(ge=100, le=10_000_000)] = 5000
    predict_retrain_min_bars: Annotated[int, Field(ge=50, le=10_000_000)] = 400
    #: the candidate's MSE may exceed the serving model's by this fraction (non-inferiority margin) ...
    predict_retrain_margin: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.01
    #: ... shown at this one-sided level
    predict_retrain_alpha: Annotated[float, Field(ge=1e-6, le=0.5, allow_inf_nan=False)] = 0.05
    #: training epochs, 0 for the model's default
    predict_retrain_epochs: Annotated[int, Field(ge=0, le=1000)] = 0
    predict_retrain_queue: QueueName = "tickerbell-predict"

    @property
    def registry_root(self) -> Path:
        return self.model_registry or self.var_dir / "models"

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


# --- the one loader ---------------------------------------------------------------------------------

T = TypeVar("T")


class _Environment(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True, case_sensitive=False)


class _MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``os.environ`` in production)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._mapping.items() if v != ""}


@functools.cache
def _environment_model(cls: Any, exclude: frozenset[str]) -> type[BaseSettings]:
    """A pydantic-settings model with the section's fields, so its source reads their variables."""
    fields: dict[str, Any] = {name: (info.annotation, info) for name, info in cls.__pydantic_fields__.items()
                              if name not in exclude}
    base = type(f"{cls.__name__}Base", (_Environment,), {
        "model_config": SettingsConfigDict(**{**_Environment.model_config, "env_prefix": cls.ENV_PREFIX})})
    model: type[BaseSettings] = create_model(f"{cls.__name__}Environment", __base__=base, **fields)
    return model


def env_name(cls: type[Any], field: str) -> str:
    """The environment variable of a settings field."""
    info = cls.__pydantic_fields__.get(field)
    alias = getattr(info, "validation_alias", None)
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"{cls.ENV_PREFIX}{field}".upper()


def _describe(cls: type[Any], exc: ValidationError) -> str:
    """One line: each bad variable, what is wrong, and the value unless the field is a secret."""
    aliases = {env_name(cls, f): f for f in cls.__pydantic_fields__}
    parts = []
    for err in exc.errors(include_url=False):
        key = str(err["loc"][0]) if err["loc"] else ""
        field = aliases.get(key, key)
        message = str(err["msg"]).removeprefix("Value error, ")
        info = cls.__pydantic_fields__.get(field)
        secret = info is not None and isinstance(info.annotation, type) and issubclass(info.annotation, SecretStr)
        given = err.get("input")
        shown = "" if secret or not isinstance(given, (str, int, float)) else f" (got {_redact(given)!r})"
        alias = getattr(info, "validation_alias", None)
        names = " or ".join(map(str, alias.choices)) if isinstance(alias, AliasChoices) else env_name(cls, field)
        parts.append(f"{names if info else key}: {message}{shown}")
    return "; ".join(parts)


def _redact(value: str | int | float) -> str | int | float:
    return redact_url(value) if isinstance(value, str) and "://" in value else value


def read_env(cls: type[Any], env: Mapping[str, str], exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The raw values the environment gives the fields of ``cls`` (unset and empty ones left out)."""
    try:
        section: Any = cls  # a class is hashable; mypy's type[Any] is not said to be
        return _MappingSource(_environment_model(section, exclude), env)()
    except Exception as exc:  # pydantic-settings' own SettingsError: a value it could not decode
        raise SettingsError(str(exc)) from None


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """``cls(**values)``, a validation error as a :class:`SettingsError` naming the variables."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(cls, exc)) from None


def load_section(cls: type[T], env: Mapping[str, str] | None = None, **given: Any) -> T:
    """A settings section (a frozen pydantic dataclass with ``ENV_PREFIX``) from the environment;
    ``given`` fields are not read (a stage passes the shared :class:`Settings` this way)."""
    env = os.environ if env is None else env
    return build(cls, {**read_env(cls, env, frozenset(given)), **given})


# --- SECRET_KEY: refused wherever others can reach the app ------------------------------------------

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


def serves_only_loopback(settings: Settings) -> bool:
    """Whether this is a development setup that only this machine can reach.

    The settings cannot see the web server's bind address, so the public URL
    stands for it: a deployment reachable by others has a non-loopback
    ``PUBLIC_URL`` (links in notifications must work for its users) or says
    ``TICKERBELL_ENV=production`` (Heroku's app.json and docker-compose.yml do).
    """
    if settings.environment == "production":
        return False
    return (urlsplit(settings.public_url).hostname or "") in LOOPBACK_HOSTS


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every shared setting; raise :class:`SettingsError` naming each bad variable."""
    env = os.environ if env is None else env
    values = read_env(Settings, env)
    if "kafka_security_protocol" not in values and values.get("kafka_username"):
        values["kafka_security_protocol"] = "SASL_SSL"
    given_key = "secret_key" in values
    settings = build(Settings, values)
    if not serves_only_loopback(settings):
        refuse_weak_secret_key(settings.secret_key.get() if given_key else "", "a deployment others can reach")
    elif not given_key:
        settings = dataclasses.replace(settings, secret_key=Secret(local_secret_key(settings.var_dir)))
    return settings


"""Settings: every variable the service reads from its environment, declared once in ``SETTINGS``.

Each has its kind of value, its default, what production asks of it and a line saying what it does;
docs/configuration.md is made from the table (``python -m config > docs/configuration.md``). The
environment is read when ``create_app`` builds the app (and when gunicorn.conf.py starts the server),
never when this module is imported. A bad value stops the start with one line naming the variable,
the value and what is accepted (``ConfigError``); the entry points print that line alone.

Adding a setting is one ``Setting(...)`` line in ``SETTINGS``; code reads it as ``app.config[NAME]``.
"""

import base64
import ipaddress
import os
import re
import sys
import urllib.parse
from dataclasses import dataclass, field

import click


class ConfigError(click.ClickException):
    """The configuration is unsafe or incomplete; the app must not start.

    A ``ClickException``: the flask CLI (``flask --app wsgi ...``) prints its line alone and exits 1.
    """


def database_url(raw: str) -> str:
    """Return a SQLAlchemy URL for ``raw``, sending ``postgres://`` and ``postgresql://`` to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)", re.IGNORECASE)
DURATION_FORM = "a duration such as 30 (seconds), 30s, 5m, 1h or 1d"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds (``30``) or one with a unit (``30s``, ``5m``, ``1h``, ``1d``)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"expected {DURATION_FORM}")
    return float(match[1]) * _UNITS[match[2].lower()]


def _seconds(value: float) -> str:
    return f"{value:g}s"


# Kinds of value. Each parses the environment's text (``parse``) and checks a value (``check``, also
# run on values a config class sets in code), raising ValueError with what it expected.


class Kind:
    """A kind of value: text from the environment to a Python value, and the rules a value follows."""

    def convert(self, text: str):
        return text

    def check(self, value) -> None:
        pass

    def parse(self, text: str):
        value = self.convert(text.strip())
        self.check(value)
        return value

    def quote(self, name: str, value) -> str:
        """How a refusal names the setting and its value (a secret's by its length only)."""
        return f"{name}={value!r}"

    def accepts(self) -> str:
        """What the docs say it accepts."""
        return "text"


@dataclass(frozen=True)
class Integer(Kind):
    minimum: int = 0
    maximum: int | None = None

    def convert(self, text):
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"expected {self.accepts()}")
        return int(text)

    def check(self, value):
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"expected {self.accepts()}")

    def accepts(self):
        if self.maximum is not None:
            return f"a whole number from {self.minimum} to {self.maximum}"
        return f"a whole number of at least {self.minimum}"


@dataclass(frozen=True)
class Duration(Kind):
    """A span of time, as seconds (a float; an int when ``whole``): longer than ``above`` or at least ``least``."""

    least: float | None = None
    above: float | None = None
    whole: bool = False

    def convert(self, text):
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError(f"expected {DURATION_FORM}{self._bounds()}") from None
        if self.whole:
            if seconds != int(seconds):
                raise ValueError(f"expected {DURATION_FORM}{self._bounds()}")
            return int(seconds)
        return seconds

    def check(self, value):
        if (self.least is not None and value < self.least) or (
            self.above is not None and value <= self.above
        ):
            raise ValueError(f"expected {DURATION_FORM}{self._bounds()}")

    def _bounds(self) -> str:
        bound = ""
        if self.least:
            bound = f" of at least {_seconds(self.least)}"
        if self.above is not None:
            bound = f" longer than {_seconds(self.above)}"
        return bound + (", in whole seconds" if self.whole else "")

    def accepts(self):
        return f"a duration{self._bounds()}"


@dataclass(frozen=True)
class Durations(Kind):
    """Comma-separated durations, at least one."""

    def convert(self, text):
        try:
            return [parse_duration(item) for item in text.split(",")]
        except ValueError:
            raise ValueError(f"expected {self.accepts()}") from None

    def check(self, value):
        if not value or any(delay < 0 for delay in value):
            raise ValueError(f"expected {self.accepts()}")

    def accepts(self):
        return "comma-separated durations (30, 30s, 5m, 1h, 1d)"


@dataclass(frozen=True)
class Flag(Kind):
    def convert(self, text):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")

    def accepts(self):
        return "true or false"


@dataclass(frozen=True)
class Choice(Kind):
    options: tuple[str, ...]

    def check(self, value):
        if value not in self.options:
            raise ValueError(f"expected {self.accepts()}")

    def accepts(self):
        return "one of " + ", ".join(self.options)


@dataclass(frozen=True)
class Word(Kind):
    """Text without spaces (a name, a key, a token): a space in one is a pasting mistake."""

    secret: bool = False
    min_length: int = 1
    why: str = ""

    def check(self, value):
        if not re.fullmatch(r"\S+", value) or len(value) < self.min_length:
            raise ValueError(f"expected {self.accepts()}" + (f": {self.why}" if self.why else ""))

    def quote(self, name, value):
        return f"{name} is {len(value)} characters" if self.secret else f"{name}={value!r}"

    def accepts(self):
        if self.min_length > 1:
            return f"at least {self.min_length} characters, no spaces"
        return "one word, no spaces"


@dataclass(frozen=True)
class PhoneNumbers(Kind):
    """Comma-separated E.164 numbers (a single number when not ``many``)."""

    many: bool = True

    def convert(self, text):
        return [item.strip() for item in text.split(",") if item.strip()] if self.many else text

    def check(self, value):
        from recordings_service.fields import PHONE_NUMBER

        if not all(PHONE_NUMBER.fullmatch(number) for number in (value if self.many else [value])):
            raise ValueError(f"expected {self.accepts()}")

    def accepts(self):
        return (
            "comma-separated E.164 numbers" if self.many else "an E.164 number"
        ) + " such as +254711082111"


def _without_credentials(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.username or parsed.password:
        return parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]).geturl()
    return url


@dataclass(frozen=True)
class Url(Kind):
    """An http(s) URL (https only when ``https_only``); a service's address (``base``) loses its trailing slash."""

    https_only: bool = False
    base: bool = False
    why: str = ""

    def convert(self, text):
        return text.rstrip("/") if self.base else text

    def check(self, value):
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in (("https",) if self.https_only else ("http", "https")) or not parsed.hostname:
            raise ValueError(f"expected {self.accepts()}" + (f": {self.why}" if self.why else ""))

    def quote(self, name, value):
        return f"{name}={_without_credentials(value)!r}"

    def accepts(self):
        return "an https URL" if self.https_only else "an http(s) URL"


@dataclass(frozen=True)
class DatabaseUrl(Kind):
    def convert(self, text):
        return database_url(text)

    def check(self, value):
        if not value.startswith(("postgresql+psycopg://", "sqlite://")):
            raise ValueError(f"expected {self.accepts()}")

    def quote(self, name, value):
        return f"{name}={_without_credentials(value)!r}"

    def accepts(self):
        return "postgresql://user:pass@host/db (or postgres://) or sqlite:///path"


@dataclass(frozen=True)
class StorageUrl(Kind):
    def check(self, value):
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("file", "s3"):
            raise ValueError(f"expected {self.accepts()}")
        if parsed.username or parsed.password:
            raise ValueError("expected no credentials in the URL: they belong in the AWS_* settings")
        if parsed.scheme == "s3" and not parsed.hostname:
            raise ValueError("expected a bucket: s3://bucket/prefix")
        if parsed.scheme == "file" and (parsed.netloc or not parsed.path.startswith("/")):
            raise ValueError("expected an absolute path: file:///srv/audio")

    def quote(self, name, value):
        return f"{name}={_without_credentials(value)!r}"

    def accepts(self):
        return "file:///absolute/path or s3://bucket/prefix"


@dataclass(frozen=True)
class Networks(Kind):
    def convert(self, text):
        return [item.strip() for item in text.split(",") if item.strip()]

    def check(self, value):
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"expected {self.accepts()}: {cidr!r} is not one") from None

    def accepts(self):
        return "comma-separated networks such as 196.201.214.0/24"


@dataclass(frozen=True)
class Origins(Kind):
    def convert(self, text):
        return [item.strip() for item in text.split(",") if item.strip()]

    def check(self, value):
        for origin in value:
            parsed = urllib.parse.urlsplit(origin)
            if origin != "*" and (
                parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path
            ):
                raise ValueError(f"expected {self.accepts()}")

    def accepts(self):
        return "* or comma-separated origins such as https://app.example"


@dataclass(frozen=True)
class WebhookSecret(Kind):
    def check(self, value):
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not value.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ValueError(
                f"expected {self.accepts()} (make one: python3 -c 'import base64, os;"
                ' print("whsec_" + base64.b64encode(os.urandom(32)).decode())\')'
            )

    def quote(self, name, value):
        return f"{name} is {len(value)} characters"

    def accepts(self):
        return "a Standard Webhooks secret: whsec_ and base64 of 24 to 64 random bytes"


# What production asks of a setting beyond the other environments.

SAME = object()  # production's default is everyone's


@dataclass(frozen=True)
class Production:
    required: bool = False
    default: str | None | object = SAME
    kind: Kind | None = None  # a stricter rule for the value

    def describe(self) -> str:
        said = []
        if self.required:
            said.append("required")
        if self.default is not SAME:
            said.append(f"default `{self.default}`" if self.default else "default none")
        if self.kind is not None:
            said.append(self.kind.accepts())
        return "; ".join(said)


def required(kind: Kind | None = None) -> Production:
    """Production refuses to start without it (and, given ``kind``, with a value ``kind`` refuses)."""
    return Production(required=True, kind=kind)


def stricter(kind: Kind) -> Production:
    """Production takes only the values ``kind`` takes."""
    return Production(kind=kind)


def default(text: str) -> Production:
    """Production's own default."""
    return Production(default=text)


@dataclass(frozen=True)
class Setting:
    """One environment variable: its kind, its default (text, as an operator writes it; None: unset), a line
    saying what it does, what production asks of it, and its ``app.config`` key when not its own name."""

    name: str
    kind: Kind
    default: str | None
    doc: str
    production: Production = field(default_factory=Production)
    key: str = ""

    @property
    def config_key(self) -> str:
        return self.key or self.name

    def refusal(self, value, reason: str, kind: Kind | None = None) -> ConfigError:
        return ConfigError(f"{(kind or self.kind).quote(self.name, value)}: {reason}")

    def read(self, environ, production: bool):
        """This setting's value in ``environ`` (its default when unset or empty)."""
        text = (environ.get(self.name) or "").strip()
        if not text:
            rule = self.production if production else Production()
            text = None if rule.required else (self.default if rule.default is SAME else rule.default)
        if text is None:
            return None
        try:
            return self.kind.parse(text)
        except ValueError as error:
            raise self.refusal(text, str(error)) from None


_CALLBACK_TOKEN = Word(
    secret=True,
    min_length=32,
    why="the token is all that guards the callback URL"
    " (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
)
_POSITIVE = Duration(above=0)

# fmt: off
SETTINGS = (
    Setting("RECORDINGS_ENV", Choice(("development", "production", "testing")), "development", "Which configuration: development, production, or the test suite's (testing, which reads no other setting)."),  # noqa: E501
    # The database
    Setting("DATABASE_URL", DatabaseUrl(), "sqlite:///recordings.db", "The database; a relative SQLite path is in the instance folder.", required(), key="SQLALCHEMY_DATABASE_URI"),  # noqa: E501
    Setting("DB_POOL_SIZE", Integer(1), "4", "Database connections each process (web worker, job worker) pools: docs/operations.md, \"Database connections\"."),  # noqa: E501
    Setting("DB_MAX_OVERFLOW", Integer(0), "0", "Connections a process may open beyond its pool."),
    Setting("DB_POOL_TIMEOUT", _POSITIVE, "5s", "How long a request waits for a pooled connection before its JSON 500."),
    Setting("DB_CONNECT_TIMEOUT", Duration(least=1, whole=True), "5s", "How long connecting to PostgreSQL may take."),
    Setting("DB_STATEMENT_TIMEOUT", _POSITIVE, "30s", "How long one PostgreSQL statement may run."),
    # The web server (gunicorn.conf.py)
    Setting("PORT", Integer(1, 65535), "8000", "Where gunicorn listens (0.0.0.0:PORT); in development also the port of the service's address outside a request (the worker, the CLI)."),  # noqa: E501
    Setting("WEB_CONCURRENCY", Integer(1), None, "gunicorn worker processes (unset: one a core)."),
    Setting("GUNICORN_WORKER_CLASS", Choice(("gevent", "gthread")), "gevent", "gunicorn's worker class (docs/production.md, \"Running it\")."),  # noqa: E501
    Setting("GUNICORN_CONNECTIONS", Integer(1), None, "Connections a gevent worker serves at once, held waits included (unset: 4096, lowered to the open-file limit with a warning; set above it, gunicorn refuses to start)."),  # noqa: E501
    Setting("GUNICORN_THREADS", Integer(1), "64", "Threads a gthread worker serves requests with."),
    Setting("GUNICORN_KEEPALIVE", Duration(least=1, whole=True), "5s", "How long a kept-alive connection waits for its next request (gevent: also the time a client has to send a request's headers)."),  # noqa: E501
    Setting("LOG_FORMAT", Choice(("json", "text", "none")), "json", "Log lines as JSON, as text, or leave logging alone (none)."),  # noqa: E501
    # Africa's Talking callbacks
    Setting("VOICE_CALLBACK_TOKEN", Word(secret=True), None, "The secret in the callback URL (?token=); unset in development: not checked.", required(_CALLBACK_TOKEN)),  # noqa: E501
    Setting("VOICE_CALLBACK_ALLOWED_NETWORKS", Networks(), "", "Networks that may post callbacks (unset: any)."),
    Setting("TRUSTED_PROXY_COUNT", Integer(0), "0", "Proxies in front that set X-Forwarded-For: the client address is read past them."),  # noqa: E501
    Setting("VOICE_DIAL_NUMBERS", PhoneNumbers(), "", "Numbers AT dials (recording) for calls of recordings that name none."),  # noqa: E501
    Setting("MAX_CONTENT_LENGTH", Integer(1), "65536", "The largest request body, in bytes."),
    Setting("MAX_FORM_PARTS", Integer(1), "200", "The most fields a form post may have."),
    Setting("BODY_TIMEOUT_SECONDS", _POSITIVE, "10s", "How long a request's body may take to arrive (then a 408)."),
    # Starting calls through AT's Voice API
    Setting("AT_USERNAME", Word(), None, "The AT account calls are started with (with AT_API_KEY, or neither: then POST /calls answers 503)."),  # noqa: E501
    Setting("AT_API_KEY", Word(secret=True), None, "The AT account's API key; never logged, and cleared from AT's text before an answer, a stored field or an event quotes it."),
    Setting("AT_VOICE_NUMBER", PhoneNumbers(many=False), None, "The AT number calls come from unless a start names one."),  # noqa: E501
    Setting("AT_VOICE_API_URL", Url(), None, "AT's Voice API endpoint (unset: AT's own, its sandbox's for AT_USERNAME=sandbox).", stricter(Url(https_only=True, why="AT_API_KEY goes with every start"))),  # noqa: E501
    Setting("AT_VOICE_TIMEOUT_SECONDS", _POSITIVE, "15s", "How long AT may take to answer a start, on the wall clock (connecting: at most 5 s of it); a start is never retried."),  # noqa: E501
    # The API
    Setting("API_AUTH_REQUIRED", Flag(), "false", "Require API keys (Authorization: Bearer) on everything but the callback and the health probes.", default("true")),  # noqa: E501
    Setting("CORS_ORIGINS", Origins(), "*", "Origins whose pages may call the API from a browser; * for any.", default("")),  # noqa: E501
    Setting("PUBLIC_BASE_URL", Url(base=True), None, "The service's address as clients reach it, for audio_url (unset: each request's host; outside a request, in development, http://localhost:PORT).", required()),  # noqa: E501
    Setting("RETRY_AFTER_SECONDS", Duration(least=1, whole=True), "2s", "The Retry-After lookups of unfinished recordings give pollers."),  # noqa: E501
    Setting("WAIT_MAX_SECONDS", Duration(least=0, whole=True), "30s", "The longest Prefer: wait a lookup is held for (0: never held)."),  # noqa: E501
    Setting("WAIT_POLL_INTERVAL", _POSITIVE, "0.1s", "How often a worker's held lookups look for changes made by other processes."),  # noqa: E501
    Setting("WAIT_MAX_HELD", Integer(0), "500", "Lookups a web worker holds waiting at once; beyond that one is answered at once."),  # noqa: E501
    Setting("WAIT_FULL_RETRY_AFTER_SECONDS", Duration(least=1, whole=True), "30s", "The Retry-After (this to twice this, at random) of a wait not held because the worker holds all it may."),  # noqa: E501
    Setting("COMPLETED_CACHE_SIZE", Integer(0), "100000", "Completed recordings each process keeps rendered (about 0.5 KB each)."),  # noqa: E501
    Setting("COMPLETED_CACHE_SECONDS", _POSITIVE, "5s", "How long one stays cached: the bound within which every process serves a change to it."),  # noqa: E501
    # Outbound requests (integrations/egress.py)
    Setting("EGRESS_ALLOW_PRIVATE", Flag(), "true", "Whether recordings and webhooks may be fetched from or sent to private, loopback and link-local addresses.", default("false")),  # noqa: E501
    Setting("EGRESS_ALLOWED_NETWORKS", Networks(), "", "Networks reachable even so (a storage or media proxy on the private network)."),  # noqa: E501
    # Recordings' audio
    Setting("AUDIO_STORAGE_URL", StorageUrl(), None, "Where audio is kept: file:///dir, or s3://bucket/prefix with boto3's AWS_* settings (unset: the instance folder's audio/)."),  # noqa: E501
    Setting("AUDIO_MAX_BYTES", Integer(1), "209715200", "The largest recording fetched, in bytes."),
    Setting("AUDIO_FETCH_CONNECT_TIMEOUT", _POSITIVE, "10s", "How long connecting to a recording's URL may take."),
    Setting("AUDIO_FETCH_READ_TIMEOUT", _POSITIVE, "30s", "How long a recording's download may go without a byte."),
    Setting("AUDIO_FETCH_DEADLINE", _POSITIVE, "10m", "The whole of one fetch attempt on the wall clock, from connecting to the body's last byte."),  # noqa: E501
    Setting("AUDIO_FETCH_RETRY_BASE_SECONDS", _POSITIVE, "5s", "The first delay before a failed fetch is tried again (doubling from there)."),  # noqa: E501
    Setting("AUDIO_FETCH_RETRY_MAX_SECONDS", _POSITIVE, "1h", "The longest delay between fetch attempts."),
    Setting("AUDIO_FETCH_GIVE_UP", _POSITIVE, "24h", "How long after its URL came a recording's fetch is given up."),
    Setting("AUDIO_RETENTION_DAYS", Integer(1), None, "Days stored audio is kept before the worker removes it (unset: kept)."),  # noqa: E501
    Setting("RETENTION_INTERVAL_SECONDS", _POSITIVE, "1h", "How often the worker applies AUDIO_RETENTION_DAYS, and removes the audio of deleted recordings that the store refused."),
    # The worker (flask --app wsgi recordings worker)
    Setting("WORKER_CONCURRENCY", Integer(1), "4", "Jobs (fetches) a worker runs at once."),
    Setting("WORK_LEASE_SECONDS", Duration(least=1), "60s", "How long a claimed job is held without news before another worker may take it (renewed while it runs)."),  # noqa: E501
    Setting("WORK_POLL_SECONDS", _POSITIVE, "1s", "How often an idle worker looks for due jobs; less than WORK_LEASE_SECONDS."),  # noqa: E501
    Setting("WORK_STOP_SECONDS", Duration(least=0), "20s", "How long a stopping worker lets the jobs in hand finish."),  # noqa: E501
    Setting("WORK_FAILING_SECONDS", _POSITIVE, "5m", "How long one of the worker's loops may keep failing (the database down) before the worker exits 1 for its supervisor to restart it."),  # noqa: E501
    Setting("SWEEP_INTERVAL_SECONDS", _POSITIVE, "1m", "How often the worker fails recordings whose URL never came."),
    Setting("SWEEP_AFTER_SECONDS", _POSITIVE, "30m", "After how long without its URL a recording is failed."),
    # Webhooks (recordings/events.py, work/deliver_webhook.py)
    Setting("WEBHOOK_URL", Url(), None, "Where every recording's events are posted (besides its own status_callback_url); needs WEBHOOK_SECRET."),  # noqa: E501
    Setting("WEBHOOK_SECRET", WebhookSecret(), None, "The Standard Webhooks secret (whsec_...) events are signed with."),  # noqa: E501
    Setting("WEBHOOK_TIMEOUT_SECONDS", _POSITIVE, "10s", "How long one delivery attempt may take, on the wall clock, headers and body included."),
    Setting("WEBHOOK_CONCURRENCY", Integer(1), "4", "Webhook deliveries a worker runs at once."),
    Setting("WEBHOOK_RETRY_SCHEDULE", Durations(), "0,5s,5m,30m,2h,5h,10h,10h", "The delay before each delivery attempt; then it is given up."),  # noqa: E501
)
# fmt: on

SETTING = {setting.name: setting for setting in SETTINGS}


def _rule_voice_api(config) -> None:
    if bool(config.get("AT_USERNAME")) != bool(config.get("AT_API_KEY")):
        raise ConfigError("AT_USERNAME and AT_API_KEY go together: set both to start calls, or neither")


def _rule_webhooks(config) -> None:
    if config.get("WEBHOOK_URL") and not config.get("WEBHOOK_SECRET"):
        raise ConfigError("WEBHOOK_URL needs WEBHOOK_SECRET, to sign what is posted to it")


def _rule_work(config) -> None:
    # The heartbeat renews leases every third of one, and idle threads look every poll: a poll as
    # long as the lease would leave due jobs unclaimed for longer than a lease.
    if config["WORK_POLL_SECONDS"] >= config["WORK_LEASE_SECONDS"]:
        raise ConfigError(
            f"WORK_POLL_SECONDS={config['WORK_POLL_SECONDS']:g}: expected less than"
            f" WORK_LEASE_SECONDS ({config['WORK_LEASE_SECONDS']:g}s)"
        )


# Rules between settings, after each setting's own.
RULES = (_rule_voice_api, _rule_webhooks, _rule_work)


def read_settings(environ, production: bool) -> dict:
    """Every setting's value in ``environ``, keyed as ``app.config`` keys it."""
    return {setting.config_key: setting.read(environ, production) for setting in SETTINGS}


def check_settings(config, production: bool) -> None:
    """Raise ``ConfigError`` when ``config`` (the app's, every setting given) must not run."""
    if production:
        missing = [
            s.name for s in SETTINGS if s.production.required and config.get(s.config_key) in (None, "")
        ]
        if missing:
            raise ConfigError(f"production configuration needs {', '.join(missing)} set in the environment")
    for setting in SETTINGS:
        value = config.get(setting.config_key)
        if value is None or value == "":
            continue
        kinds = [setting.kind] + ([setting.production.kind] if production and setting.production.kind else [])
        for kind in kinds:
            try:
                kind.check(value)
            except ValueError as error:
                raise setting.refusal(value, str(error), kind) from None
    for rule in RULES:
        rule(config)


class Config:
    """What every environment shares besides the settings: constants of the libraries' own."""

    PRODUCTION = False
    READS_ENVIRONMENT = True

    # Engine options are made from the DB_* settings (persistence/database.py, engine_options).
    SQLALCHEMY_RECORD_QUERIES = False
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    # flask-smorest / OpenAPI
    API_TITLE = "recordings-service"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    API_SPEC_OPTIONS = {"servers": [{"url": "/", "description": "This service, wherever it is reached"}]}
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"

    @classmethod
    def settings(cls, environ=None) -> dict:
        """The settings this environment reads from ``environ`` (by default ``os.environ``)."""
        environ = os.environ if environ is None else environ
        return read_settings(environ if cls.READS_ENVIRONMENT else {}, cls.PRODUCTION)

    @classmethod
    def check(cls, config) -> None:
        """Raise ``ConfigError`` when the app's effective ``config`` must not run."""
        check_settings(config, cls.PRODUCTION)


class DevelopmentConfig(Config):
    """The default: a SQLite file in the instance folder, no callback token required."""

    RECORDINGS_ENV = "development"
    DEBUG = False


class TestingConfig(Config):
    """Used by the test suite: every setting its default, whatever the environment says; the tests set
    the database URL and the rest themselves."""

    RECORDINGS_ENV = "testing"
    READS_ENVIRONMENT = False
    TESTING = True
    LOG_FORMAT = "none"


class ProductionConfig(Config):
    """Production: the settings' production rules apply (``Setting.production``)."""

    RECORDINGS_ENV = "production"
    PRODUCTION = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env(environ=None) -> type[Config]:
    """Pick the configuration named by ``RECORDINGS_ENV`` (development when unset)."""
    return CONFIGS[SETTING["RECORDINGS_ENV"].read(os.environ if environ is None else environ, False)]


def load(environ=None) -> dict:
    """The settings of the environment ``RECORDINGS_ENV`` names, checked (for gunicorn.conf.py)."""
    config_class = config_from_env(environ)
    settings = config_class.settings(environ)
    config_class.check(settings)
    return settings


def settings_doc() -> str:
    """docs/configuration.md: the table of settings, as Markdown."""
    lines = [
        "# Configuration",
        "",
        "Every setting comes from the environment, read when the app starts. A bad value stops the start",
        "with one line naming it. Durations are seconds (`30`) or take a unit: `30s`, `5m`, `1h`, `1d`.",
        "",
        "Generated from `SETTINGS` in config.py (`python -m config > docs/configuration.md`); do not edit.",
        "",
        "| setting | default | production | accepts | what it does |",
        "|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        shown_default = f"`{setting.default}`" if setting.default else "unset"
        cells = [
            f"`{setting.name}`",
            shown_default,
            setting.production.describe(),
            setting.kind.accepts(),
            setting.doc,
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_doc())

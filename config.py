"""Configuration classes, selected by ``create_app`` (see ``recordings_service.create_app``).

Every setting can come from the environment. Development needs nothing set; Production refuses to
start when something it needs is missing, rather than falling back to an unsafe default.
"""

import base64
import ipaddress
import os
import urllib.parse


def database_url(raw: str) -> str:
    """Return a SQLAlchemy URL for ``raw``, sending ``postgres://`` and ``postgresql://`` to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


# The callback URL's secret is all that stands between the internet and the recordings' state.
CALLBACK_TOKEN_MIN_LENGTH = 32


class ConfigError(RuntimeError):
    """The configuration is unsafe or incomplete; the app must not start."""


def audio_storage_url_problem(url: str) -> str | None:
    """What is wrong with an ``AUDIO_STORAGE_URL`` (``None`` when nothing is)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("file", "s3"):
        return f"{parsed.scheme or url!r} is not file:// or s3://"
    if parsed.username or parsed.password:
        return "credentials belong in the AWS_* settings, not in the URL"
    if parsed.scheme == "s3" and not parsed.hostname:
        return "s3:// needs a bucket (s3://bucket/prefix)"
    if parsed.scheme == "file" and (parsed.netloc or not parsed.path.startswith("/")):
        return "file:// needs an absolute path (file:///srv/audio)"
    return None


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={value!r}: say true or false")


_SECONDS_IN = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _env_seconds(name: str, default: str) -> float:
    """A span of time from the environment: seconds (``90``) or with a unit (``90s``, ``30m``, ``24h``, ``7d``)."""
    value = os.environ.get(name, default).strip()
    unit = _SECONDS_IN.get(value[-1:].lower())
    try:
        return float(value[:-1]) * unit if unit else float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: say a number of seconds, or e.g. 90s, 30m, 24h, 7d") from None


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class Config:
    """Settings shared by every environment."""

    # A relative SQLite path lives in the instance folder (Flask-SQLAlchemy resolves it there).
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL", "sqlite:///recordings.db"))
    # Engine options are made from the DB_* settings (persistence/database.py, engine_options).
    SQLALCHEMY_RECORD_QUERIES = False
    # Connections each process pools (a web worker, a job worker): README, "Connection budget".
    DB_POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "4"))
    DB_MAX_OVERFLOW = int(os.environ.get("DB_MAX_OVERFLOW", "0"))
    # Seconds: to wait for a pooled connection, to connect, and (PostgreSQL) for one statement.
    DB_POOL_TIMEOUT = float(os.environ.get("DB_POOL_TIMEOUT", "5"))
    DB_CONNECT_TIMEOUT = int(os.environ.get("DB_CONNECT_TIMEOUT", "5"))
    DB_STATEMENT_TIMEOUT = float(os.environ.get("DB_STATEMENT_TIMEOUT", "30"))
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    # Africa's Talking callback: the secret carried in the callback URL, and what else guards it.
    VOICE_CALLBACK_TOKEN = os.environ.get("VOICE_CALLBACK_TOKEN") or None
    VOICE_CALLBACK_ALLOWED_NETWORKS = _env_list("VOICE_CALLBACK_ALLOWED_NETWORKS")
    TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
    VOICE_DIAL_NUMBERS = _env_list("VOICE_DIAL_NUMBERS")
    # Starting calls through AT's Voice API (POST /api/v1/voice/calls, `recordings start-call`): the
    # account and its key (both, or calls cannot be started), the AT number calls come from unless a
    # start names one, and the API's URL (default: AT's own, its sandbox's for the username "sandbox").
    AT_USERNAME = os.environ.get("AT_USERNAME") or None
    AT_API_KEY = os.environ.get("AT_API_KEY") or None
    AT_VOICE_NUMBER = os.environ.get("AT_VOICE_NUMBER") or None
    AT_VOICE_API_URL = os.environ.get("AT_VOICE_API_URL") or None
    # How long AT may take to answer a start (connecting: at most 5 s of it). A start is never retried.
    AT_VOICE_TIMEOUT_SECONDS = _env_seconds("AT_VOICE_TIMEOUT_SECONDS", "15s")
    # AT's form posts are small; anything near this is not a callback. A body must arrive in
    # BODY_TIMEOUT_SECONDS (web/bodies.py).
    MAX_CONTENT_LENGTH = int(os.environ.get("MAX_CONTENT_LENGTH", str(64 * 1024)))
    BODY_TIMEOUT_SECONDS = float(os.environ.get("BODY_TIMEOUT_SECONDS", "10"))
    MAX_FORM_PARTS = int(os.environ.get("MAX_FORM_PARTS", "200"))

    # Outbound HTTP (integrations/egress.py: recordings fetched from AT's URLs, webhooks): private,
    # loopback and link-local addresses are reachable only with EGRESS_ALLOW_PRIVATE (true in
    # development and tests, false in production) or inside EGRESS_ALLOWED_NETWORKS (comma-separated
    # CIDRs, e.g. a storage or media proxy on the private network).
    EGRESS_ALLOW_PRIVATE = _env_flag("EGRESS_ALLOW_PRIVATE", default=True)
    EGRESS_ALLOWED_NETWORKS = _env_list("EGRESS_ALLOWED_NETWORKS")

    # Where the audio is kept (integrations/storage.py): unset, the instance folder's audio/;
    # file:///absolute/path, a local directory; s3://bucket/prefix, S3-compatible object storage with
    # boto3's own AWS_* settings (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and
    # AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3 for a store other than AWS).
    AUDIO_STORAGE_URL = os.environ.get("AUDIO_STORAGE_URL") or None

    # json (the default), text, or none (leave logging alone)
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")

    # API keys (Authorization: Bearer) on everything but the callback and the health probes.
    API_AUTH_REQUIRED = _env_flag("API_AUTH_REQUIRED", default=False)
    # Origins whose pages may call the API from a browser; "*" for any.
    CORS_ORIGINS = _env_list("CORS_ORIGINS") or ["*"]

    # Lookups: how long pollers are asked to wait, and how long a request may be held (Prefer: wait).
    RETRY_AFTER_SECONDS = int(os.environ.get("RETRY_AFTER_SECONDS", "2"))
    WAIT_MAX_SECONDS = int(os.environ.get("WAIT_MAX_SECONDS", "30"))
    WAIT_POLL_INTERVAL = float(os.environ.get("WAIT_POLL_INTERVAL", "0.1"))
    # Requests a worker holds waiting at once (an eighth of the 4,096 connections gunicorn.conf.py gives
    # a worker); beyond that, a request is answered at once, with Retry-After WAIT_FULL_RETRY_AFTER_SECONDS:
    # longer than a poller's, so that clients over the budget cannot keep the workers busy re-asking.
    WAIT_MAX_HELD = int(os.environ.get("WAIT_MAX_HELD", "500"))
    WAIT_FULL_RETRY_AFTER_SECONDS = int(os.environ.get("WAIT_FULL_RETRY_AFTER_SECONDS", "30"))
    # Completed recordings kept rendered in each process (about 0.5 KB each), each for at most
    # COMPLETED_CACHE_SECONDS: the bound within which every process serves a change to one (a replay).
    COMPLETED_CACHE_SIZE = int(os.environ.get("COMPLETED_CACHE_SIZE", "100000"))
    COMPLETED_CACHE_SECONDS = float(os.environ.get("COMPLETED_CACHE_SECONDS", "5"))

    # The service's own address as clients reach it, for the absolute URLs it gives (audio_url): needed
    # where no request says it (the worker); without it, each request's own host is used.
    PUBLIC_BASE_URL = (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None

    # Recordings: fetched from AT's URL, verified, stored (integrations/storage.py: AUDIO_STORAGE_URL).
    AUDIO_MAX_BYTES = int(os.environ.get("AUDIO_MAX_BYTES", str(200 * 1024 * 1024)))
    AUDIO_FETCH_CONNECT_TIMEOUT = _env_seconds("AUDIO_FETCH_CONNECT_TIMEOUT", "10s")
    AUDIO_FETCH_READ_TIMEOUT = _env_seconds("AUDIO_FETCH_READ_TIMEOUT", "30s")
    # The whole of one fetch attempt on the wall clock, from connecting to the body's last byte.
    AUDIO_FETCH_DEADLINE = _env_seconds("AUDIO_FETCH_DEADLINE", "10m")
    # Failed fetches are retried, backing off from BASE to MAX, until GIVE_UP has passed since the URL came.
    AUDIO_FETCH_RETRY_BASE_SECONDS = _env_seconds("AUDIO_FETCH_RETRY_BASE_SECONDS", "5s")
    AUDIO_FETCH_RETRY_MAX_SECONDS = _env_seconds("AUDIO_FETCH_RETRY_MAX_SECONDS", "1h")
    AUDIO_FETCH_GIVE_UP = _env_seconds("AUDIO_FETCH_GIVE_UP", "24h")

    # The worker (flask recordings worker): how long a claimed job is held without news before another
    # worker may take it, how often idle threads look for due jobs, how long a stopping worker lets the
    # jobs in hand finish, how long a loop may keep failing before the worker exits 1 (for its supervisor
    # to restart it), and the sweep of recordings whose URL never came.
    WORK_LEASE_SECONDS = _env_seconds("WORK_LEASE_SECONDS", "60s")
    WORK_POLL_SECONDS = _env_seconds("WORK_POLL_SECONDS", "1s")
    WORK_STOP_SECONDS = _env_seconds("WORK_STOP_SECONDS", "20s")
    WORK_FAILING_SECONDS = _env_seconds("WORK_FAILING_SECONDS", "5m")
    WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", "4"))
    SWEEP_INTERVAL_SECONDS = _env_seconds("SWEEP_INTERVAL_SECONDS", "1m")
    SWEEP_AFTER_SECONDS = _env_seconds("SWEEP_AFTER_SECONDS", "30m")

    # Telling clients (recordings/events.py, work/webhooks.py): every recording's events go to WEBHOOK_URL
    # (if set) and to its own status_callback_url, signed with WEBHOOK_SECRET (Standard Webhooks, whsec_...).
    WEBHOOK_URL = os.environ.get("WEBHOOK_URL") or None
    WEBHOOK_SECRET = os.environ.get("WEBHOOK_SECRET") or None
    WEBHOOK_TIMEOUT_SECONDS = _env_seconds("WEBHOOK_TIMEOUT_SECONDS", "10s")
    WEBHOOK_CONCURRENCY = int(os.environ.get("WEBHOOK_CONCURRENCY", "4"))
    # Seconds before each attempt (Standard Webhooks' schedule): then given up.
    WEBHOOK_RETRY_SCHEDULE = [
        float(delay)
        for delay in os.environ.get("WEBHOOK_RETRY_SCHEDULE", "0,5,300,1800,7200,18000,36000,36000").split(
            ","
        )
    ]

    # Retention: stored audio older than this is removed by the worker (unset: kept).
    AUDIO_RETENTION_DAYS = (
        float(os.environ["AUDIO_RETENTION_DAYS"]) if os.environ.get("AUDIO_RETENTION_DAYS") else None
    )
    RETENTION_INTERVAL_SECONDS = _env_seconds("RETENTION_INTERVAL_SECONDS", "1h")

    # flask-smorest / OpenAPI
    API_TITLE = "recordings-service"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    API_SPEC_OPTIONS = {"servers": [{"url": "/", "description": "This service, wherever it is reached"}]}
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"

    @staticmethod
    def check(config) -> None:
        """Raise ``ConfigError`` when the app's effective ``config`` must not run."""
        for setting in ("VOICE_CALLBACK_ALLOWED_NETWORKS", "EGRESS_ALLOWED_NETWORKS"):
            for cidr in config[setting]:
                try:
                    ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    raise ConfigError(f"{setting}: {cidr!r} is not a network") from None
        storage_url = config.get("AUDIO_STORAGE_URL")
        if storage_url:
            problem = audio_storage_url_problem(storage_url)
            if problem:
                raise ConfigError(f"AUDIO_STORAGE_URL: {problem}")
        _check_webhooks(config)
        _check_voice_api(config)


def _check_voice_api(config) -> None:
    if bool(config.get("AT_USERNAME")) != bool(config.get("AT_API_KEY")):
        raise ConfigError("AT_USERNAME and AT_API_KEY go together: set both to start calls, or neither")
    url = config.get("AT_VOICE_API_URL")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError("AT_VOICE_API_URL must be an http(s) URL")


def _check_webhooks(config) -> None:
    secret, url = config.get("WEBHOOK_SECRET"), config.get("WEBHOOK_URL")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError("WEBHOOK_URL must be an http(s) URL")
    if url and not secret:
        raise ConfigError("WEBHOOK_URL needs WEBHOOK_SECRET, to sign what is posted to it")
    if secret:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ConfigError(
                "WEBHOOK_SECRET must be a Standard Webhooks secret: whsec_ and base64 of 24 to 64 random bytes"
                " (make one: python3 -c 'import base64, os; print(\"whsec_\" + base64.b64encode(os.urandom(32)).decode())')"
            )


class DevelopmentConfig(Config):
    """The default: a SQLite file in the instance folder, no callback token required."""

    DEBUG = False


class TestingConfig(Config):
    """Used by the test suite; the tests set the database URL themselves."""

    TESTING = True
    API_AUTH_REQUIRED = False
    WEBHOOK_URL = None
    WEBHOOK_SECRET = None
    AUDIO_RETENTION_DAYS = None
    LOG_FORMAT = "none"
    VOICE_CALLBACK_TOKEN = None
    VOICE_DIAL_NUMBERS: list[str] = []
    VOICE_CALLBACK_ALLOWED_NETWORKS: list[str] = []
    AT_USERNAME = None
    AT_API_KEY = None
    AT_VOICE_NUMBER = None
    AT_VOICE_API_URL = None
    # The tests' peers (media servers, the S3 stand-in) are on loopback.
    EGRESS_ALLOW_PRIVATE = True
    EGRESS_ALLOWED_NETWORKS: list[str] = []
    AUDIO_STORAGE_URL = None


class ProductionConfig(Config):
    """Production: PostgreSQL and a callback token are required."""

    # No fallback: an unset DATABASE_URL must stop the app, not quietly write to a local SQLite file.
    SQLALCHEMY_DATABASE_URI = database_url(os.environ.get("DATABASE_URL", ""))
    API_AUTH_REQUIRED = _env_flag("API_AUTH_REQUIRED", default=True)
    # No browser origin unless named.
    CORS_ORIGINS = _env_list("CORS_ORIGINS")
    # A URL given to the service must not reach its own network unless an operator opens it.
    EGRESS_ALLOW_PRIVATE = _env_flag("EGRESS_ALLOW_PRIVATE", default=False)

    @staticmethod
    def check(config) -> None:
        Config.check(config)
        missing = [
            name
            for name, key in (
                ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI"),
                ("VOICE_CALLBACK_TOKEN", "VOICE_CALLBACK_TOKEN"),
                ("PUBLIC_BASE_URL", "PUBLIC_BASE_URL"),
            )
            if not config.get(key)
        ]
        if missing:
            raise ConfigError(f"production configuration needs {', '.join(missing)} set in the environment")
        url = config.get("AT_VOICE_API_URL")
        if url and not url.startswith("https://"):
            raise ConfigError(
                "AT_VOICE_API_URL must be https in production: AT_API_KEY goes with every start"
            )
        if len(config["VOICE_CALLBACK_TOKEN"]) < CALLBACK_TOKEN_MIN_LENGTH:
            raise ConfigError(
                f"VOICE_CALLBACK_TOKEN is {len(config['VOICE_CALLBACK_TOKEN'])} characters: production needs at"
                f" least {CALLBACK_TOKEN_MIN_LENGTH}, since the token is all that guards the callback URL"
                " (make one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env() -> type[Config]:
    """Pick the configuration named by ``RECORDINGS_ENV`` (development when unset)."""
    name = os.environ.get("RECORDINGS_ENV", "development")
    try:
        return CONFIGS[name]
    except KeyError:
        raise ConfigError(f"RECORDINGS_ENV={name!r} is not one of {', '.join(CONFIGS)}") from None

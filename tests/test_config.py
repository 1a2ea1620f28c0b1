"""Configuration: what each environment needs, and production refusing to start unsafely."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, ProductionConfig, database_url
from recordings_service import create_app
from testkit.config import config_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:p@db:5432/rec", "postgresql+psycopg://u:p@db:5432/rec"),
        ("postgresql://u@db/rec", "postgresql+psycopg://u@db/rec"),
        ("postgresql+psycopg://u@db/rec", "postgresql+psycopg://u@db/rec"),
        ("sqlite:///recordings.db", "sqlite:///recordings.db"),
    ],
)
def test_database_url_sends_postgres_to_psycopg(raw, expected):
    assert database_url(raw) == expected


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"SQLALCHEMY_DATABASE_URI": "", "VOICE_CALLBACK_TOKEN": "s3cret"}, "DATABASE_URL"),
        (
            {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/rec", "VOICE_CALLBACK_TOKEN": None},
            "VOICE_CALLBACK_TOKEN",
        ),
    ],
)
def test_production_refuses_to_start_without_what_it_needs(settings, missing):
    config = type("Prod", (ProductionConfig,), settings)

    with pytest.raises(ConfigError, match=missing):
        create_app(config)


def test_production_from_a_bare_environment_exits_with_a_clear_message():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VOICE_CALLBACK_TOKEN")}
    env["RECORDINGS_ENV"] = "production"

    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr and "VOICE_CALLBACK_TOKEN" in result.stderr


def test_an_unknown_environment_name_is_refused(monkeypatch):
    monkeypatch.setenv("RECORDINGS_ENV", "staging")

    with pytest.raises(ConfigError, match="staging"):
        create_app()


def test_outbound_requests_reach_private_addresses_only_outside_production():
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGRESS_")}
    code = "import config; print(*(c.settings()['EGRESS_ALLOW_PRIVATE'] for c in config.CONFIGS.values()))"

    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    development, testing, production = result.stdout.split()
    assert (development, testing, production) == ("True", "True", "False")


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"EGRESS_ALLOWED_NETWORKS": ["10.0.0.0/33"]}, "EGRESS_ALLOWED_NETWORKS"),
        (
            {"AUDIO_STORAGE_URL": "ftp://audio.example/recordings"},
            "AUDIO_STORAGE_URL='ftp://audio.example/recordings': expected file:///",
        ),
        ({"AUDIO_STORAGE_URL": "s3:///recordings"}, "expected a bucket"),
        ({"AUDIO_STORAGE_URL": "file://audio"}, "expected an absolute path"),
        (
            {"AUDIO_STORAGE_URL": "s3://AKIAKEY:s3cr3t@bucket/audio"},
            "credentials in the URL: they belong in the AWS_",
        ),
        ({"AT_USERNAME": "recordings"}, "AT_USERNAME and AT_API_KEY go together"),
        ({"AT_API_KEY": "s3cr3t-at-key"}, "AT_USERNAME and AT_API_KEY go together"),
        (
            {"AT_VOICE_API_URL": "voice.africastalking.com/call"},
            "AT_VOICE_API_URL='voice.africastalking.com/call': expected an http",
        ),
    ],
)
def test_bad_egress_and_storage_settings_stop_the_app(tmp_path, settings, named):
    config = config_for(f"sqlite:///{tmp_path}/recordings.db", **settings)

    with pytest.raises(ConfigError, match=named) as raised:
        create_app(config)

    assert "s3cr3t" not in str(raised.value)


def test_production_sends_the_at_key_over_https_only():
    settings = {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/rec", "VOICE_CALLBACK_TOKEN": "t" * 32}
    settings |= {"PUBLIC_BASE_URL": "https://rec.example", "AT_VOICE_API_URL": "http://voice.example/call"}

    with pytest.raises(
        ConfigError, match="AT_VOICE_API_URL='http://voice.example/call': expected an https URL"
    ):
        create_app(type("Prod", (ProductionConfig,), settings))


@pytest.mark.parametrize("token", ["s3cret", "x" * 31])
def test_production_refuses_a_short_callback_token_saying_why(token):
    config = type(
        "Prod",
        (ProductionConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://db/rec",
            "VOICE_CALLBACK_TOKEN": token,
            "PUBLIC_BASE_URL": "https://recordings.example",
        },
    )

    with pytest.raises(ConfigError) as refused:
        create_app(config)

    message = str(refused.value)
    assert f"VOICE_CALLBACK_TOKEN is {len(token)} characters" in message
    assert "at least 32" in message and "guards the callback URL" in message
    assert token not in message  # the (weak) secret itself is not repeated into logs


def test_production_takes_a_callback_token_of_32_characters(tmp_path):
    config = type(
        "Prod",
        (ProductionConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/recordings.db",
            "VOICE_CALLBACK_TOKEN": "x" * 32,
            "PUBLIC_BASE_URL": "https://recordings.example",
            "AUDIO_STORAGE_URL": f"file://{tmp_path}/audio",
        },
    )

    assert create_app(config).config["VOICE_CALLBACK_TOKEN"] == "x" * 32


def _connections_under(limit: int, requested: int | None) -> subprocess.CompletedProcess:
    """openfiles.worker_connections(requested) in a process whose open-file limit is ``limit`` (soft and
    hard: a process cannot raise its hard limit again, so not this one)."""
    code = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
        "from recordings_service.openfiles import worker_connections\n"
        f"print(worker_connections({requested}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_gunicorn_serves_the_connections_its_open_file_limit_allows():
    default = _connections_under(8192, None)
    lowered = _connections_under(1024, None)
    refused = _connections_under(1024, 4000)
    asked = _connections_under(1024, 500)

    assert default.stdout.strip() == "(4096, None)"
    connections, warning = ast.literal_eval(lowered.stdout)
    assert connections == 1024 - 128 and "RLIMIT_NOFILE" in warning
    assert refused.returncode != 0 and "GUNICORN_CONNECTIONS=4000" in refused.stderr
    assert "ConfigError" in refused.stderr
    assert asked.stdout.strip() == "(500, None)"

"""Configuration: what each environment needs, and production refusing to start unsafely."""

import os
import subprocess
import sys

import pytest

from config import ConfigError, ProductionConfig, database_url
from recordings_service import create_app


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

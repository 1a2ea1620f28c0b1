"""The settings table (config.py): every setting refuses a bad value with one line naming it, durations
read alike everywhere, the environment read when the app is made, and the docs made from the table."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import config
from config import SETTINGS, ConfigError, DevelopmentConfig, read_settings, settings_doc
from recordings_service import create_app
from recordings_service.cli import recordings_cli
from recordings_service.recordings import public
from testkit.servers import gunicorn, http

ROOT = Path(__file__).resolve().parent.parent


def _bad_values(kind) -> list[str]:
    """Values ``kind`` must refuse, from what it is: a new setting of a known kind is covered as it is."""
    if isinstance(kind, config.Integer):
        return ["many", "1.5", str(kind.minimum - 1)] + ([str(kind.maximum + 1)] if kind.maximum else [])
    if isinstance(kind, config.Duration):
        below = f"{kind.above:g}" if kind.above is not None else f"{(kind.least or 0) - 1:g}s"
        return ["soon", "5w", below] + (["1.5s"] if kind.whole else [])
    bad = {
        config.Durations: ["0,soon", "-5"],
        config.Flag: ["maybe"],
        config.Choice: ["other"],
        config.Word: ["two words"],
        config.PhoneNumbers: ["0711 082 111", "+254711082111,254711"],
        config.Url: ["voice.example/call", "ftp://voice.example/call"],
        config.DatabaseUrl: ["mysql://db/recordings"],
        config.StorageUrl: ["ftp://audio.example/recordings", "file://audio"],
        config.Networks: ["10.0.0.0/33", "196.201.214.0/24,somewhere"],
        config.Origins: ["app.example", "https://app.example/path"],
        config.WebhookSecret: ["whsec_c2hvcnQ=", "not-a-secret"],
    }
    return bad[type(kind)]  # a KeyError: a new kind of setting needs its bad values here


CASES = [(setting, value) for setting in SETTINGS for value in _bad_values(setting.kind)]


@pytest.mark.parametrize(("setting", "value"), CASES, ids=[f"{s.name}={v}" for s, v in CASES])
def test_every_setting_refuses_a_bad_value_with_one_line_naming_it(setting, value):
    with pytest.raises(ConfigError) as refused:
        read_settings({setting.name: value}, production=False)

    line = refused.value.message
    assert line.startswith(setting.kind.quote(setting.name, value) + ": expected") and "\n" not in line


@pytest.mark.parametrize("name", ["VOICE_CALLBACK_TOKEN", "AT_API_KEY", "WEBHOOK_SECRET"])
def test_a_refused_secret_is_named_by_its_length_only(name):
    with pytest.raises(ConfigError, match=f"^{name} is 17 characters: expected") as refused:
        read_settings({name: "s3cr3t and spaces"}, production=False)

    assert "s3cr3t" not in refused.value.message


@pytest.mark.parametrize("name", ["DATABASE_URL", "AUDIO_STORAGE_URL", "WEBHOOK_URL"])
def test_a_refused_url_is_quoted_without_its_credentials(name):
    with pytest.raises(ConfigError, match=f"^{name}='ftp://\\*\\*\\*@host/x': expected") as refused:
        read_settings({name: "ftp://rec:s3cr3t@host/x"}, production=False)

    assert "s3cr3t" not in refused.value.message


PRODUCTION = {
    "RECORDINGS_ENV": "production",
    "DATABASE_URL": "postgresql://rec@db/recordings",
    "VOICE_CALLBACK_TOKEN": "t" * 32,
    "PUBLIC_BASE_URL": "https://recordings.example/",
}


def test_production_starts_with_what_it_requires():
    settings = config.load(PRODUCTION)

    assert (settings["PUBLIC_BASE_URL"], settings["API_AUTH_REQUIRED"]) == (
        "https://recordings.example",
        True,
    )


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.production.required], ids=lambda s: s.name)
def test_production_refuses_to_start_without_each_setting_it_requires(setting):
    environ = {name: value for name, value in PRODUCTION.items() if name != setting.name}

    with pytest.raises(ConfigError, match=f"^production configuration needs {setting.name} set"):
        config.load(environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDIO_RETENTION_DAYS", "0"),
        ("WORK_LEASE_SECONDS", "0"),
        ("WORK_LEASE_SECONDS", "-30s"),
        ("WORK_POLL_SECONDS", "0"),
        ("WORKER_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "0"),
        ("GUNICORN_CONNECTIONS", "0"),
    ],
)
def test_values_that_would_remove_everything_or_spin_are_refused(name, value):
    with pytest.raises(ConfigError, match=f"^{name}={value!r}: expected"):
        read_settings({name: value}, production=False)


def test_a_poll_as_long_as_the_lease_is_refused():
    with pytest.raises(ConfigError, match="^WORK_POLL_SECONDS=60: expected less than WORK_LEASE_SECONDS"):
        config.load({"WORK_LEASE_SECONDS": "1m", "WORK_POLL_SECONDS": "60"})


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if isinstance(s.kind, config.Duration)], ids=lambda s: s.name
)
def test_every_time_setting_takes_a_unit(setting):
    in_seconds = read_settings({setting.name: "120"}, production=False)[setting.config_key]

    assert read_settings({setting.name: "120s"}, production=False)[setting.config_key] == in_seconds == 120
    assert read_settings({setting.name: "2m"}, production=False)[setting.config_key] == 120


def test_the_environment_is_read_when_the_app_is_made(monkeypatch, tmp_path):
    monkeypatch.setenv("WAIT_MAX_SECONDS", "7s")
    app = create_app(
        type("Dev", (DevelopmentConfig,), {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/r.db"})
    )

    assert app.config["WAIT_MAX_SECONDS"] == 7


def test_in_development_the_address_outside_a_request_follows_port(monkeypatch, tmp_path):
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    app = create_app(
        type("Dev", (DevelopmentConfig,), {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/r.db"})
    )

    with app.app_context():
        assert public.base_url() == "http://localhost:8123"


def test_the_procfiles_worker_gets_the_web_servers_port(tmp_path):
    """honcho gives the worker a PORT of its own (the web's plus 100); `make run` passes WEB_PORT."""
    fake_flask = tmp_path / "flask"
    fake_flask.write_text('#!/bin/sh\necho "$PORT"\n')
    fake_flask.chmod(fake_flask.stat().st_mode | stat.S_IEXEC)
    procfile = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line
    )
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "PORT": "8223", "WEB_PORT": "8123"}

    result = subprocess.run(
        ["sh", "-c", procfile["worker"]], env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "8123"
    assert "WEB_PORT=$(PORT)" in (ROOT / "Makefile").read_text()


# Every entry point: gunicorn, the migrations `make run` starts with, every command of the flask CLI.
COMMANDS = [
    ["-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"],
    ["-m", "flask", "--app", "wsgi", "db", "upgrade"],
] + [
    ["-m", "flask", "--app", "wsgi", "recordings", name]
    for name in sorted({*recordings_cli.commands, "seed-demo", "simulate-call"})
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_entry_point_stops_with_the_one_line(command, tmp_path):
    env = {**os.environ, "WAIT_MAX_SECONDS": "soon", "DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}

    result = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    line = "WAIT_MAX_SECONDS='soon': expected a duration such as 30 (seconds), 30s, 5m, 1h or 1d, in whole seconds"
    assert result.stderr.splitlines() == [line if "gunicorn" in command else f"Error: {line}"]
    assert not (tmp_path / "r.db").exists()


def test_gunicorn_refuses_zero_workers_or_connections_instead_of_serving_nothing(tmp_path):
    for name in ("WEB_CONCURRENCY", "GUNICORN_CONNECTIONS"):
        env = {**os.environ, name: "0", "DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
        command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "wsgi:app"]

        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

        assert result.returncode != 0
        assert result.stderr.strip() == f"{name}='0': expected a whole number of at least 1"


@pytest.mark.slow
def test_gunicorn_takes_its_durations_with_units(database):
    with gunicorn(database, GUNICORN_KEEPALIVE="5s", WAIT_MAX_SECONDS="30s", DB_POOL_TIMEOUT="5s") as base:
        assert http("GET", base + "/healthz")[0] == 200


def test_the_configuration_doc_is_made_from_the_table():
    doc = (ROOT / "docs" / "configuration.md").read_text()

    assert doc == settings_doc(), "docs/configuration.md is stale: make docs"
    assert all(f"| `{setting.name}` |" in doc for setting in SETTINGS)

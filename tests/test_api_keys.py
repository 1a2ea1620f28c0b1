"""API keys: with API_AUTH_REQUIRED, every endpoint but the callback and the probes needs one."""

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from recordings_service.extensions import db
from tests.support import fixture_call

RECORDED = fixture_call("recorded-call")


@pytest.fixture
def secured(make_app):
    return make_app(API_AUTH_REQUIRED=True)


@pytest.fixture
def key(secured):
    result = secured.test_cli_runner().invoke(args=["recordings", "create-api-key", "dashboard"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


GUARDED = [
    ("get", "/api/v1/voice/recordings/conf_1234567890"),
    ("get", "/api/v1/voice/recordings"),
    ("post", "/api/v1/voice/recordings"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/no/such/route"),
]


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer rsk_wrong", "Basic dXNlcjpwYXNz"])
def test_without_a_valid_key_everything_else_is_401(secured, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = getattr(secured.test_client(), method)(path, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json == {"detail": "A valid API key is required: Authorization: Bearer <key>"}


def test_the_callback_and_the_probes_need_no_key(secured):
    client = secured.test_client()

    assert client.post("/api/v1/voice/callback", data=RECORDED[0]).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_a_valid_key_opens_every_endpoint(secured, key):
    client = secured.test_client()
    headers = {"Authorization": f"Bearer {key}"}

    assert (
        client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"}, headers=headers).status_code
        == 201
    )
    assert client.get("/api/v1/voice/recordings/conf_1", headers=headers).status_code == 200
    assert client.get("/api/v1/voice/recordings", headers=headers).status_code == 200
    assert client.get("/api/v1/openapi.json", headers=headers).status_code == 200
    assert client.get("/metrics", headers=headers).status_code == 200


def test_a_revoked_key_is_refused(secured, key):
    runner = secured.test_cli_runner()

    assert runner.invoke(args=["recordings", "revoke-api-key", "dashboard"]).exit_code == 0

    response = secured.test_client().get(
        "/api/v1/voice/recordings", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 401
    assert "revoked" in runner.invoke(args=["recordings", "list-api-keys"]).output


def test_only_a_hash_of_the_key_is_stored(secured, key):
    from recordings_service.extensions import db
    from recordings_service.persistence.models import ApiKey

    with secured.app_context():
        [row] = db.session.execute(db.select(ApiKey)).scalars().all()
        assert key not in (row.key_hash, row.prefix) and key.startswith(row.prefix)
    listing = secured.test_cli_runner().invoke(args=["recordings", "list-api-keys"]).output
    assert "dashboard" in listing and key not in listing


def test_names_are_unique_and_unknown_names_cannot_be_revoked(secured, key):
    runner = secured.test_cli_runner()

    assert "exists already" in runner.invoke(args=["recordings", "create-api-key", "dashboard"]).output
    assert "no key named" in runner.invoke(args=["recordings", "revoke-api-key", "nobody"]).output


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "a key's name cannot be empty"),
        ("   ", "a key's name cannot be empty"),
        ("\t\n", "a key's name cannot be empty"),
        ("ops\x00", "a key's name is printable text"),
        ("x" * 101, "a key's name is at most 100 characters"),
    ],
    ids=["empty", "spaces", "whitespace", "nul", "too-long"],
)
def test_a_key_needs_a_name_it_can_be_told_by(secured, name, said):
    from recordings_service.persistence.models import ApiKey

    result = secured.test_cli_runner().invoke(args=["recordings", "create-api-key", name])

    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"Error: {said}"]
    with secured.app_context():
        assert db.session.execute(db.select(ApiKey)).scalars().all() == []


def test_development_keeps_the_seeds_unauthenticated_curl_working(client):
    assert client.get("/api/v1/voice/recordings").status_code == 200


@pytest.mark.parametrize(
    ("value", "production", "development"),
    [(None, "True", "False"), ("false", "False", "False"), ("true", "True", "True")],
)
def test_production_requires_keys_unless_told_otherwise(value, production, development):
    env = {k: v for k, v in os.environ.items() if k != "API_AUTH_REQUIRED"}
    if value is not None:
        env["API_AUTH_REQUIRED"] = value
    code = "import config; print(*(c.settings()['API_AUTH_REQUIRED'] for c in (config.ProductionConfig, config.DevelopmentConfig)))"

    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    assert result.stdout.split() == [production, development], result.stderr


def test_a_setting_that_is_not_true_or_false_stops_the_start():
    env = {**os.environ, "API_AUTH_REQUIRED": "maybe"}

    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0 and "API_AUTH_REQUIRED='maybe'" in result.stderr


@pytest.fixture
def checkouts(secured):
    """The most pooled connections the app held at once since the last reset (``peak[0]``)."""
    held, peak = [0], [0]

    def checked_out(*_):
        held[0] += 1
        peak[0] = max(peak[0], held[0])

    def checked_in(*_):
        held[0] -= 1

    with secured.app_context():
        engine = db.engine
    sa.event.listen(engine, "checkout", checked_out)
    sa.event.listen(engine, "checkin", checked_in)
    yield peak
    sa.event.remove(engine, "checkout", checked_out)
    sa.event.remove(engine, "checkin", checked_in)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/v1/voice/recordings/conf_1", None),
        ("get", "/api/v1/voice/recordings/conf_missing", None),
        ("get", "/api/v1/voice/recordings", None),
        ("post", "/api/v1/voice/recordings", {"recording_id": "conf_2", "session_ids": ["ATVId_x"]}),
    ],
)
def test_a_request_with_a_key_holds_one_pooled_connection_at_a_time(
    secured, key, checkouts, method, path, body
):
    client = secured.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    client.post("/api/v1/voice/recordings", json={"recording_id": "conf_1"}, headers=headers)
    checkouts[0] = 0

    response = getattr(client, method)(path, json=body, headers=headers)

    assert response.status_code < 500
    assert checkouts[0] == 1

"""CORS: pages on the origins in CORS_ORIGINS may call the API from a browser, with an API key.

What a browser does, asked of the app directly: a preflight (OPTIONS, no key) before a request carrying
``Authorization``, then the request itself, whose answer the page may read only when it names its origin.
The real browser doing it is tests/test_browser.py.
"""

import os
import subprocess
import sys

import pytest

APP = "https://app.example"
LOOKUP = "/api/v1/voice/recordings/conf_1234567890"


def preflight(client, path: str, method: str, headers: str, origin: str = APP):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def allowed_headers(response) -> set[str]:
    return {
        name.strip().lower() for name in response.headers.get("Access-Control-Allow-Headers", "").split(",")
    }


@pytest.fixture
def browser_app(make_app):
    """Keys on, the documented example seeded, and a key for the page: (app, key)."""
    app = make_app(API_AUTH_REQUIRED=True, CORS_ORIGINS=[APP])
    runner = app.test_cli_runner()
    assert runner.invoke(args=["recordings", "seed-demo", "--count", "0"]).exit_code == 0
    result = runner.invoke(args=["recordings", "create-api-key", "browser"])
    assert result.exit_code == 0, result.output
    return app, result.output.strip()


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        (LOOKUP, "GET", "authorization"),
        (LOOKUP, "GET", "authorization, if-none-match, prefer"),
        ("/api/v1/voice/recordings", "GET", "authorization"),
        ("/api/v1/voice/recordings", "POST", "authorization, content-type"),
        (LOOKUP + "/audio", "GET", "authorization, range, if-range, if-none-match"),
        ("/api/v1/voice/calls", "POST", "authorization, content-type, idempotency-key"),
    ],
)
def test_a_preflight_needs_no_key_and_allows_the_key_to_be_sent(browser_app, path, method, headers):
    app, _ = browser_app

    response = preflight(app.test_client(), path, method, headers)

    assert response.status_code in (200, 204)
    assert "WWW-Authenticate" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert method in response.headers["Access-Control-Allow-Methods"]
    assert allowed_headers(response) >= {name.strip() for name in headers.split(",")}


def test_an_allowed_origin_reads_the_lookup_and_can_poll_it(browser_app):
    app, key = browser_app
    client = app.test_client()
    headers = {"Origin": APP, "Authorization": f"Bearer {key}"}

    first = client.get(LOOKUP, headers=headers)
    again = client.get(LOOKUP, headers={**headers, "If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200 and first.json["recording_id"] == "conf_1234567890"
    assert again.status_code == 304
    for response in (first, again):
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert exposed_headers(response) >= {"etag", "retry-after", "preference-applied"}


def exposed_headers(response) -> set[str]:
    return {name.strip().lower() for name in response.headers["Access-Control-Expose-Headers"].split(",")}


def test_a_preflight_offers_only_the_methods_the_routes_take(browser_app):
    app, _ = browser_app
    taken = {method for rule in app.url_map.iter_rules() for method in rule.methods}

    response = preflight(app.test_client(), LOOKUP, "DELETE", "authorization")

    offered = {name.strip() for name in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert offered == taken == {"GET", "HEAD", "POST", "DELETE", "OPTIONS"}


def test_a_page_may_read_the_headers_of_a_range_and_of_a_start(browser_app):
    app, key = browser_app

    # One list for every answer under /api: the range served and its size, where a started recording is.
    response = app.test_client().get(LOOKUP, headers={"Origin": APP, "Authorization": f"Bearer {key}"})

    assert exposed_headers(response) >= {"content-range", "accept-ranges", "content-length", "location"}


def test_a_refusal_is_readable_by_an_allowed_page(browser_app):
    app, _ = browser_app

    response = app.test_client().get(LOOKUP, headers={"Origin": APP, "Authorization": "Bearer rsk_wrong"})

    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.json == {"detail": "A valid API key is required: Authorization: Bearer <key>"}


def test_a_page_from_another_origin_gets_no_allow_header(browser_app):
    app, key = browser_app
    client = app.test_client()
    other = "https://app.example.evil.test"

    refused_preflight = preflight(client, LOOKUP, "GET", "authorization", origin=other)
    refused = client.get(LOOKUP, headers={"Origin": other, "Authorization": f"Bearer {key}"})

    assert "Access-Control-Allow-Origin" not in refused_preflight.headers
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_any_origin_when_told_so(make_app):
    app = make_app(API_AUTH_REQUIRED=True, CORS_ORIGINS=["*"])

    response = preflight(app.test_client(), LOOKUP, "GET", "authorization", origin="http://localhost:3000")

    assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:3000")
    assert "authorization" in allowed_headers(response)


def test_no_origins_allow_none(make_app):
    app = make_app(API_AUTH_REQUIRED=True, CORS_ORIGINS=[])
    client = app.test_client()

    response = preflight(client, LOOKUP, "GET", "authorization")
    lookup = client.get(LOOKUP, headers={"Origin": APP})

    assert "WWW-Authenticate" not in response.headers
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in lookup.headers


BOTH = ["https://app.example", "https://ops.example"]


@pytest.mark.parametrize(
    ("value", "production", "development"),
    [(None, [], ["*"]), ("https://app.example, https://ops.example", BOTH, BOTH)],
)
def test_origins_come_from_cors_origins_and_production_names_none_by_default(value, production, development):
    env = {k: v for k, v in os.environ.items() if k != "CORS_ORIGINS"}
    if value is not None:
        env["CORS_ORIGINS"] = value
    code = "import config; print(*(c.settings()['CORS_ORIGINS'] for c in (config.ProductionConfig, config.DevelopmentConfig)))"

    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    assert result.stdout.strip() == f"{production} {development}", result.stderr

"""The OpenAPI document: valid OpenAPI 3, and the app keeps to it under property-based fuzzing."""

import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from testkit.servers import gunicorn

SPEC = "/api/v1/openapi.json"


@pytest.fixture
def fuzzed(make_app, fake_at):
    """The app as production runs it (API keys on), with a key, some data to find, and an AT to call."""
    app = make_app(
        API_AUTH_REQUIRED=True,
        WAIT_MAX_SECONDS=1,
        AT_USERNAME="recordings",
        AT_API_KEY=fake_at.api_key,
        AT_VOICE_API_URL=fake_at.url,
        AT_VOICE_NUMBER="+254203893400",
    )
    runner = app.test_cli_runner()
    runner.invoke(args=["recordings", "seed-demo", "--count", "20"])
    key = runner.invoke(args=["recordings", "create-api-key", "fuzz"]).output.strip()
    return app, {"Authorization": f"Bearer {key}"}


def test_the_spec_is_valid_openapi_3(fuzzed):
    app, headers = fuzzed

    spec = app.test_client().get(SPEC, headers=headers).json

    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert {
        "/api/v1/voice/recordings",
        "/api/v1/voice/recordings/{recording_id}",
        "/api/v1/voice/callback",
        "/api/v1/voice/calls",
    } <= set(spec["paths"])
    lookup = spec["paths"]["/api/v1/voice/recordings/{recording_id}"]["get"]["responses"]
    assert {"200", "304", "404", "500"} <= set(lookup)
    assert spec["components"]["schemas"]["Error"]["required"] == ["detail"]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_app_keeps_to_its_spec(fuzzed):
    # schemathesis's own pytest plugin (from_fixture) does not run on pytest 9, so its strategies are
    # driven with hypothesis directly: the same cases and checks, one operation after another.
    app, headers = fuzzed
    schema = schemathesis.openapi.from_wsgi(SPEC, app, headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 13

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def keeps_to_spec(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        keeps_to_spec()


def test_the_spec_says_what_the_callback_takes_and_what_keys_cost(fuzzed):
    app, headers = fuzzed

    spec = app.test_client().get(SPEC, headers=headers).json

    assert spec["servers"] and spec["servers"][0]["url"]
    callback = spec["paths"]["/api/v1/voice/callback"]["post"]
    form = callback["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    fields = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]]["properties"]
    assert fields["isActive"]["type"] == "string" and fields["isActive"]["enum"] == ["0", "1"]
    [token] = [p for p in callback["parameters"] if p["name"] == "token"]
    assert token["in"] == "query" and "VOICE_CALLBACK_TOKEN" in token["description"]
    assert {"400", "403", "413"} <= set(callback["responses"])
    assert callback["security"] == [] and "401" not in callback["responses"]
    operations = [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    ]
    keyed = [(path, method) for path, method, operation in operations if operation.get("security") != []]
    assert keyed  # the API proper needs a key...
    for path, method, operation in operations:  # ...and every operation that does documents its 401
        assert ("401" in operation["responses"]) == ((path, method) in keyed), (path, method)
    listing = spec["paths"]["/api/v1/voice/recordings"]["get"]
    [cursor] = [p for p in listing["parameters"] if p["name"] == "cursor"]
    assert cursor["schema"]["minLength"] == 1 and "400" in listing["responses"]


def test_the_audio_is_described_as_bytes_and_a_legs_audio_as_its_schema_or_null(fuzzed):
    app, headers = fuzzed

    spec = app.test_client().get(SPEC, headers=headers).json

    for path in ["/audio", "/legs/{session_id}/audio"]:
        responses = spec["paths"]["/api/v1/voice/recordings/{recording_id}" + path]["get"]["responses"]
        for status in ["200", "206"]:
            content = responses[status]["content"]
            assert {"audio/mpeg", "audio/wav", "audio/ogg"} <= set(content), (path, status)
            assert {media["schema"]["format"] for media in content.values()} == {"binary"}
        assert (
            "Content-Range" in responses["206"]["headers"] and "Content-Range" in responses["416"]["headers"]
        )
    leg_audio = spec["components"]["schemas"]["Leg"]["properties"]["audio"]
    assert leg_audio == {"allOf": [{"$ref": "#/components/schemas/LegAudio"}], "nullable": True}


def test_an_empty_cursor_is_the_documented_400(fuzzed):
    app, headers = fuzzed

    response = app.test_client().get("/api/v1/voice/recordings?cursor=", headers=headers)

    assert response.status_code == 400 and "cursor" in response.json["detail"]


def test_every_405_says_which_methods_are_allowed(fuzzed):
    app, headers = fuzzed
    client = app.test_client()
    paths = {
        rule.rule.replace("<path:recording_id>", "conf_1").replace("<session_id>", "ATVId_a")
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }

    refused = 0
    for path in sorted(paths):
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "BREW"]:
            response = client.open(path, method=method, headers=headers)
            if response.status_code != 405:
                continue
            refused += 1
            allowed = {name.strip() for name in response.headers.get("Allow", "").split(",")} - {""}
            assert allowed and method not in allowed, (method, path, allowed)
            assert response.json["detail"]
            # Each method it names is one the path takes.
            for other in allowed - {"OPTIONS", "HEAD"}:
                assert client.open(path, method=other, headers=headers).status_code != 405, (other, path)
    assert refused > 10


def test_without_keys_the_spec_asks_for_none(make_app):
    app = make_app(API_AUTH_REQUIRED=False)

    spec = app.test_client().get(SPEC).json

    assert "security" not in spec and "securitySchemes" not in spec.get("components", {})
    assert not [
        (path, method)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and "401" in operation["responses"]
    ]


def test_a_callbacks_other_fields_are_documented_as_single_strings(fuzzed):
    app, headers = fuzzed

    callback = app.test_client().get(SPEC, headers=headers).json["components"]["schemas"]["Callback"]

    assert callback["additionalProperties"] == {"type": "string"}
    # A form cannot say null: no field is nullable, none defaults to null.
    assert not [
        name for name, field in callback["properties"].items() if field.get("nullable") or "default" in field
    ]


def test_sub_resources_of_a_recording_are_not_offered_delete(fuzzed):
    app, headers = fuzzed
    client = app.test_client()

    for path in ["/audio", "/legs", "/deliveries", "/legs/ATVId_a/audio"]:
        response = client.options("/api/v1/voice/recordings/conf_1" + path, headers=headers)
        assert "DELETE" not in response.headers["Allow"], path
        assert client.delete("/api/v1/voice/recordings/conf_1" + path, headers=headers).status_code == 405
    assert "DELETE" in client.options("/api/v1/voice/recordings/conf_1", headers=headers).headers["Allow"]


@pytest.mark.slow
@pytest.mark.parametrize("keys", [True, False], ids=["keys-on", "keys-off"])
def test_the_running_service_keeps_to_its_spec_under_every_check(database, runner, tmp_path, keys, fake_at):
    """schemathesis's CLI, every check, against the service as gunicorn serves it, starting calls through
    a fake AT (tests/schemathesis.toml says what the spec's schemas cannot)."""
    runner.invoke(args=["recordings", "seed-demo", "--count", "20"])
    key = runner.invoke(args=["recordings", "create-api-key", "schemathesis"]).output.strip()
    settings = {"API_AUTH_REQUIRED": str(keys).lower(), "WAIT_MAX_SECONDS": "1", "LOG_FORMAT": "text"}
    settings |= {"AT_USERNAME": "recordings", "AT_API_KEY": fake_at.api_key, "AT_VOICE_API_URL": fake_at.url}
    settings |= {"AT_VOICE_NUMBER": "+254203893400"}
    with gunicorn(database, workers=2, log_to=tmp_path / "server.log", **settings) as base:
        command = [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(Path(__file__).parent / "schemathesis.toml"),
            "run",
            f"{base}{SPEC}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            # One worker: schemathesis's workers are threads, and Python 3.11's ast module keeps one
            # recursion counter for all of them (CPython gh-106905), so two can fail a run with
            # "SystemError: AST constructor recursion depth mismatch".
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
            *(["--header", f"Authorization: Bearer {key}"] if keys else []),
        ]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stdout[-20_000:] + result.stderr[-5_000:]
    assert " passed" in result.stdout

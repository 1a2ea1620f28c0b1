"""The OpenAPI document: valid OpenAPI 3, and the app keeps to it under property-based fuzzing."""

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

"""The service as `make run` serves it: gunicorn, gunicorn.conf.py, real HTTP."""

import json

import pytest

from testkit.servers import gunicorn, http
from tests.support import CONTRACT_BODY

pytestmark = pytest.mark.slow


@pytest.fixture
def server(database, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "10"])
    with gunicorn(database) as base:
        yield base


def test_the_contract_examples_over_http(server):
    found = http("GET", server + "/api/v1/voice/recordings/conf_1234567890")
    missing = http("GET", server + "/api/v1/voice/recordings/conf_9999999999")
    too_long = http("GET", server + "/api/v1/voice/recordings/" + "x" * 5000)

    assert found[0] == 200
    assert json.loads(found[2]) == CONTRACT_BODY
    for status, headers, body in (missing, too_long):
        assert status == 404
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"detail": "Recording not found"}

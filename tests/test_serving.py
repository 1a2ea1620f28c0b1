"""The service as `make run` serves it: gunicorn, gunicorn.conf.py, real HTTP."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.servers import gunicorn, http
from tests.support import seeded_contract_body

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(database, runner):
    runner.invoke(args=["recordings", "seed-demo", "--count", "10"])
    with gunicorn(database) as base:
        yield base


def test_the_documented_examples_over_http(server):
    found = http("GET", server + "/api/v1/voice/recordings/conf_1234567890")
    missing = http("GET", server + "/api/v1/voice/recordings/conf_9999999999")
    too_long = http("GET", server + "/api/v1/voice/recordings/" + "x" * 5000)

    assert found[0] == 200
    assert json.loads(found[2]) == seeded_contract_body(server)
    for status, headers, body in (missing, too_long):
        assert status == 404
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"detail": "Recording not found"}


# Run under gevent's patching, as gunicorn's gevent workers run the app: a share of the database reads is
# taken and given back (every lookup does) while another greenlet is ready to run.
_SHARE_UNDER_GEVENT = """
from gevent import monkey

monkey.patch_all()

import gevent
import greenlet

from sqlalchemy import create_engine

from recordings_service.persistence.database import Reads

shares = Reads(create_engine("sqlite://"), 10)
switches = []
ready = gevent.spawn(lambda: None)  # another request, ready to run
greenlet.settrace(lambda event, args: switches.append(event))
for share in (shares.reads, shares.waits):
    with share:
        pass
greenlet.settrace(None)
ready.join()
print(len(switches))
"""


def test_a_lookup_does_not_give_up_its_gevent_worker_for_its_share_of_the_database():
    """threading's semaphore, built on gevent's locks, yielded on every release: each lookup was cut in
    slices, each waiting its turn behind every other request of the worker."""
    result = subprocess.run(
        [sys.executable, "-c", _SHARE_UNDER_GEVENT], capture_output=True, text=True, timeout=60, cwd=ROOT
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"

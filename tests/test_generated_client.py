"""A client generated from the running service's spec by openapi-python-client, as a user makes one
(with the repository's openapi-python-client.yml), used against the service as gunicorn serves it."""

import hashlib
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.media import RECORDED_CALL
from testkit.servers import ROOT, gunicorn, http
from tests.support import drain, fixture_call, recorded_call

pytestmark = pytest.mark.slow

CONFIG = ROOT / "openapi-python-client.yml"
SESSION = fixture_call("recorded-call")[0]["sessionId"]
VOICE = "recordings_client.api.voice."


@pytest.fixture
def generate(tmp_path):
    """Generate the client package from a spec into a scratch folder and import it; forgotten after."""

    def generate(spec: bytes):
        (tmp_path / "openapi.json").write_bytes(spec)
        bin_dir = str(Path(sys.executable).parent)  # its post-hooks run ruff, from this virtualenv
        result = subprocess.run(
            [sys.executable, "-m", "openapi_python_client", "generate", "--path", "openapi.json"]
            + ["--config", str(CONFIG), "--output-path", "recordings_client", "--meta", "none"],
            cwd=tmp_path,
            env={**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        # A warning is a part of the spec the generator could not read, and left out of the client.
        assert "Warning" not in output, output
        sys.path.insert(0, str(tmp_path))
        return importlib.import_module("recordings_client")

    yield generate
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] == "recordings_client"]:
        del sys.modules[name]


def test_a_generated_client_reads_a_recording_a_page_and_the_audio(
    database, make_app, media, tmp_path, generate
):
    storage = {"AUDIO_STORAGE_URL": f"file://{tmp_path}/audio"}
    app = make_app(**storage)
    client = app.test_client()
    for fields in recorded_call(media):
        assert client.post("/api/v1/voice/callback", data=fields).status_code == 200
    assert drain(app) == 1
    assert app.test_cli_runner().invoke(args=["recordings", "seed-demo", "--count", "3"]).exit_code == 0

    with gunicorn(database, workers=1, **storage) as base:
        status, _, spec = http("GET", base + "/api/v1/openapi.json")
        assert status == 200
        generated = generate(spec)
        lookup = importlib.import_module(VOICE + "get_api_v1_voice_recordings_recording_id")
        listing = importlib.import_module(VOICE + "get_api_v1_voice_recordings")
        legs = importlib.import_module(VOICE + "get_api_v1_voice_recordings_recording_id_legs")
        audio = importlib.import_module(VOICE + "get_api_v1_voice_recordings_recording_id_audio")
        with generated.Client(base_url=base) as api:
            found = lookup.sync(SESSION, client=api)
            first = listing.sync(client=api, limit=2)
            second = listing.sync(client=api, limit=2, cursor=first.next_cursor)
            [leg] = legs.sync(SESSION, client=api).items
            whole = audio.sync_detailed(SESSION, client=api)
            tail = audio.sync_detailed(SESSION, client=api, range_="bytes=-100")

    models = importlib.import_module("recordings_client.models")
    source = RECORDED_CALL.read_bytes()
    assert isinstance(found, models.Recording) and found.status is models.RecordingStatus.COMPLETED
    assert found.audio_url.endswith(f"/api/v1/voice/recordings/{SESSION}/audio")
    assert isinstance(first, models.RecordingPage) and first.items[0].recording_id == SESSION
    assert len(first.items) == 2 and first.next_cursor
    assert not {item.recording_id for item in first.items} & {item.recording_id for item in second.items}
    assert isinstance(leg.audio, models.LegAudio)
    assert leg.audio.sha256 == hashlib.sha256(source).hexdigest()
    assert whole.status_code == 200 and whole.parsed.payload.read() == source
    assert tail.status_code == 206 and tail.parsed.payload.read() == source[-100:]

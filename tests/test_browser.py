"""A real browser: headless Chromium runs a polling client on a page of another origin.

The service is served as `make run` serves it, with API keys on; the page comes from a second loopback
server on another port, so every lookup it makes is cross-origin, with a preflight for its
``Authorization`` header. `make test` installs Debian's chromium when it is missing.
"""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

from testkit.media import RECORDED_CALL
from testkit.servers import gunicorn, http
from tests.support import drain, fixture_call, recorded_call, seeded_contract_body

pytestmark = pytest.mark.slow

SESSION = fixture_call("recorded-call")[0]["sessionId"]

CHROMIUM = "/usr/bin/chromium"  # Debian's: `make test` installs it when missing
# Running as root needs --no-sandbox; the rest keep Chromium from calling out of this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A client that polls a recording (`waitForRecording`), told where the service is and given a key.
PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>recordings client</title>
<script>
async function waitForRecording(base, key, recordingId) {
  const maxAttempts = 30;
  const pollInterval = 2000; // 2 seconds
  for (let i = 0; i < maxAttempts; i++) {
    const response = await fetch(`${base}/api/v1/voice/recordings/${recordingId}`, {
      headers: { Authorization: `Bearer ${key}` },
    });
    const data = await response.json();
    if (data.status === 'completed' && data.recording_url) {
      return data;
    }
    if (data.status === 'failed') {
      throw new Error('Recording failed');
    }
    await new Promise(resolve => setTimeout(resolve, pollInterval));
  }
  throw new Error('Recording timeout');
}
</script>
"""
RUN_CLIENT = """([base, key, recordingId]) =>
    waitForRecording(base, key, recordingId).catch(error => ({error: String(error)}))"""

# A player's page: the last bytes of a recording's audio (a suffix Range, which needs a preflight), and
# a start of calls sent twice with one Idempotency-Key, as a page retrying after a lost answer does.
PLAYER = b"""<!doctype html>
<meta charset="utf-8">
<title>recordings player</title>
<script>
async function audioTail(base, key, recordingId) {
  const response = await fetch(`${base}/api/v1/voice/recordings/${recordingId}/audio`, {
    headers: { Authorization: `Bearer ${key}`, Range: 'bytes=-100' },
  });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {
    status: response.status,
    contentRange: response.headers.get('Content-Range'),
    acceptRanges: response.headers.get('Accept-Ranges'),
    bytes: Array.from(bytes),
  };
}

async function startCalls(base, key, request, idempotencyKey) {
  const response = await fetch(`${base}/api/v1/voice/calls`, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      'Idempotency-Key': idempotencyKey,
    },
    body: JSON.stringify(request),
  });
  return { status: response.status, location: response.headers.get('Location'), body: await response.json() };
}
</script>
"""
RUN_PLAYER = """async ([base, key, recordingId, request]) => {
  try {
    const tail = await audioTail(base, key, recordingId);
    const first = await startCalls(base, key, request, 'page-retry-1');
    const again = await startCalls(base, key, request, 'page-retry-1');
    return { tail, first, again };
  } catch (error) {
    return { error: String(error) };
  }
}"""
PAGES = {"/": PAGE, "/player": PLAYER}


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        page = PAGES.get(self.path, b"")
        self.send_response(200 if page else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args):
        pass  # the test says what went wrong; a line per request on stderr would not


@pytest.fixture(scope="module")
def page_origin():
    """The origin of a second loopback server, serving the client's page at /."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, Debian's (playwright launches it with a fresh profile of its own)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def key(make_app):
    """The documented example seeded, and an API key for the page."""
    runner = make_app().test_cli_runner()
    assert runner.invoke(args=["recordings", "seed-demo", "--count", "0"]).exit_code == 0
    result = runner.invoke(args=["recordings", "create-api-key", "browser"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def run_page(browser, url: str, script: str, arguments: list):
    """What ``script`` (a function of ``arguments``) answers on the page at ``url``."""
    # A context of its own, closed before the server stops: its kept-alive connections go with it
    # (else gunicorn's graceful stop waits out their keep-alive).
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        return page.evaluate(script, arguments)
    finally:
        context.close()


def run_client(browser, page_origin: str, base: str, key: str):
    """What the client, on a page of ``page_origin``, gets for the documented example."""
    return run_page(browser, page_origin + "/", RUN_CLIENT, [base, key, "conf_1234567890"])


def test_a_page_on_an_allowed_origin_reads_a_recording_with_its_key(database, key, browser, page_origin):
    with gunicorn(database, workers=1, API_AUTH_REQUIRED="true", CORS_ORIGINS=page_origin) as base:
        result = run_client(browser, page_origin, base, key)

    assert result == seeded_contract_body(base)


def test_without_cors_for_its_origin_the_same_page_fails_to_fetch(database, key, browser, page_origin):
    elsewhere = "https://dashboard.example"
    with gunicorn(database, workers=1, API_AUTH_REQUIRED="true", CORS_ORIGINS=elsewhere) as base:
        result = run_client(browser, page_origin, base, key)
        # The service is up and the key good: only CORS stands between the page and the answer.
        answered = http(
            "GET",
            base + "/api/v1/voice/recordings/conf_1234567890",
            headers={"Authorization": f"Bearer {key}"},
        )

    assert result == {"error": "TypeError: Failed to fetch"}
    assert answered[0] == 200


def test_a_page_reads_a_range_of_the_audio_and_retries_a_start_with_its_idempotency_key(
    database, key, make_app, media, fake_at, browser, page_origin, tmp_path
):
    storage = {"AUDIO_STORAGE_URL": f"file://{tmp_path}/audio"}
    app = make_app(**storage)
    client = app.test_client()
    for fields in recorded_call(media):
        assert client.post("/api/v1/voice/callback", data=fields).status_code == 200
    assert drain(app) == 1
    at = {"AT_USERNAME": "recordings", "AT_API_KEY": fake_at.api_key, "AT_VOICE_API_URL": fake_at.url}
    request = {"to": ["+254711000001"], "dial": ["+254722000111"], "from": "+254203893400"}

    settings = {"API_AUTH_REQUIRED": "true", "CORS_ORIGINS": page_origin, **storage, **at}
    with gunicorn(database, workers=1, **settings) as base:
        result = run_page(browser, page_origin + "/player", RUN_PLAYER, [base, key, SESSION, request])

    source = RECORDED_CALL.read_bytes()
    assert "error" not in result, result
    tail = result["tail"]
    assert (tail["status"], tail["contentRange"], tail["acceptRanges"]) == (
        206,
        f"bytes {len(source) - 100}-{len(source) - 1}/{len(source)}",
        "bytes",
    )
    assert bytes(tail["bytes"]) == source[-100:]
    first, again = result["first"], result["again"]
    assert (first["status"], again["status"]) == (201, 201)
    assert again == first and first["location"].endswith(first["body"]["recording_id"])
    assert fake_at.calls == 1  # the retry, known by its key, called nobody again

"""A real browser: headless Chromium runs the contract's client on a page of another origin.

The service is served as `make run` serves it, with API keys on; the page comes from a second loopback
server on another port, so every lookup it makes is cross-origin, with a preflight for its
``Authorization`` header. `make test` installs Debian's chromium when it is missing.
"""

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import sync_playwright

from testkit.servers import gunicorn, http
from tests.support import CONTRACT_BODY

pytestmark = pytest.mark.slow

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

# The contract's client (its `waitForRecording`), told where the service is and given a key.
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


class _Page(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

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
    """The contract's example seeded, and an API key for the page."""
    runner = make_app().test_cli_runner()
    assert runner.invoke(args=["recordings", "seed-demo", "--count", "0"]).exit_code == 0
    result = runner.invoke(args=["recordings", "create-api-key", "browser"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def run_client(browser, page_origin: str, base: str, key: str):
    """What the contract's client, on a page of ``page_origin``, gets for the contract's example."""
    # A context of its own, closed before the server stops: its kept-alive connections go with it
    # (else gunicorn's graceful stop waits out their keep-alive).
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(page_origin + "/")
        return page.evaluate(RUN_CLIENT, [base, key, "conf_1234567890"])
    finally:
        context.close()


def test_a_page_on_an_allowed_origin_reads_a_recording_with_its_key(database, key, browser, page_origin):
    with gunicorn(database, workers=1, API_AUTH_REQUIRED="true", CORS_ORIGINS=page_origin) as base:
        result = run_client(browser, page_origin, base, key)

    assert result == CONTRACT_BODY


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

"""Outbound HTTP (integrations/egress.py): fetching a recording from the URL a caller gives, safely.

Every peer is a real HTTP server on loopback (testkit/media.py). No test may connect anywhere else:
the ``connects`` fixture fails a test at once if any socket tries to, so an address the policy must
refuse (10.0.0.1, 169.254.169.254, a public one) is shown to be refused before any packet is sent.
"""

import hashlib
import io
import ipaddress
import json
import logging
import os
import socket
import time
import tracemalloc

import httpx
import pytest

from recordings_service.exceptions import (
    BadStatus,
    LengthMismatch,
    NetworkError,
    TimedOut,
    TooLarge,
    TooManyRedirects,
    UnsafeURL,
)
from recordings_service.integrations import egress
from recordings_service.integrations.egress import (
    DEVELOPMENT_POLICY,
    PRODUCTION_POLICY,
    EgressPolicy,
    check_url,
    download,
    make_client,
)
from recordings_service.logs import configure_logging
from testkit.media import RECORDED_CALL, Answer, MediaServer
from testkit.servers import free_port

RECORDED_CALL_SHA256 = "f3713d2296317d5c48cb842eb80ecd725d2484f62e0a87c3a1d7bc6db3acc3be"
RECORDED_CALL_SIZE = 29_153
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def connects(monkeypatch):
    """Every address a socket of this test connects to; anything off loopback fails the test."""
    attempted = []

    class LoopbackOnlySocket(socket.socket):
        def connect(self, address):
            attempted.append(address[0])
            if not ipaddress.ip_address(address[0]).is_loopback:
                raise AssertionError(f"a test tried to connect to {address[0]}, off loopback")
            return super().connect(address)

    monkeypatch.setattr(socket, "socket", LoopbackOnlySocket)
    return attempted


def fetch(url, policy=DEVELOPMENT_POLICY, max_bytes=10 * MB, **options):
    into = io.BytesIO()
    result = download(url, into, max_bytes=max_bytes, policy=policy, **options)
    return result, into.getvalue()


def test_a_recording_is_downloaded_whole_with_its_size_hash_and_type(media):
    url = media.serve_file("/recording/abc123.mp3")

    result, body = fetch(url)

    assert body == RECORDED_CALL.read_bytes()
    assert result.size == RECORDED_CALL_SIZE == result.content_length
    assert result.sha256 == RECORDED_CALL_SHA256 == hashlib.sha256(body).hexdigest()
    assert result.content_type == "audio/mpeg"


@pytest.fixture
def json_log():
    """The service's log lines, as configure_logging("json") writes them: a function reading them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("json")
    written = io.StringIO()
    [service] = [handler for handler in root.handlers if handler not in handlers]
    service.setStream(written)
    yield lambda: [json.loads(line) for line in written.getvalue().splitlines()]
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_log_line_shows_a_recording_urls_query_string(media, json_log):
    signature = "sig=0123456789abcdef-signed"
    media.serve_file("/final.mp3")
    media.redirect("/recording.mp3", f"/final.mp3?{signature}")
    url = media.url(f"/recording.mp3?{signature}")

    fetch(url)
    with pytest.raises(BadStatus):
        fetch(media.url(f"/missing.mp3?{signature}"))

    lines = json_log()
    assert [line for line in lines if line["logger"] == "httpx"], "httpx logged no request"
    assert not [line for line in lines if "sig=" in json.dumps(line)]


def test_the_request_names_the_service_and_sends_no_credentials_or_cookies(media):
    media.answers["/first"] = Answer(
        200, {"Set-Cookie": "session=abc; Path=/", "Content-Length": "2"}, lambda: [b"ok"]
    )
    second = media.serve("/second", b"ok")

    with make_client(DEVELOPMENT_POLICY) as client:
        client.get(media.url("/first"))
        client.get(second)

    sent = [headers for _, headers in media.requests]
    assert {headers["User-Agent"] for headers in sent} == {egress.USER_AGENT}
    assert not any("Cookie" in headers or "Authorization" in headers for headers in sent)


def test_a_missing_recording_is_a_bad_status_worth_retrying(media):
    url = media.status("/recording/not-yet.mp3", 404)

    with pytest.raises(BadStatus) as raised:
        fetch(url)

    assert raised.value.status == 404
    assert raised.value.retryable


def test_a_redirect_is_followed_and_the_final_response_counts(media):
    media.serve_file("/final.mp3")
    url = media.redirect("/moved.mp3", "/final.mp3")

    result, body = fetch(url)

    assert result.sha256 == RECORDED_CALL_SHA256
    assert result.url.endswith("/final.mp3")


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/recording.mp3",
        "http://127.0.0.1:{port}/recording.mp3",
        "http://10.0.0.1/recording.mp3",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/recording.mp3",
        "http://[::1]:{port}/recording.mp3",
    ],
)
def test_production_refuses_a_redirect_to_a_private_address_before_connecting(location, connects):
    # The recording's host is allowed (as a public host would be); where it redirects to is not.
    policy = EgressPolicy.from_networks(False, ["127.0.0.2/32"])
    with MediaServer(host="127.0.0.2") as media:
        media.serve_file("/recording.mp3")
        url = media.redirect("/moved.mp3", location.format(port=media.port))

        with pytest.raises(UnsafeURL, match="not allowed"):
            fetch(url, policy)

        assert connects == ["127.0.0.2"]
        assert [path for path, _ in media.requests] == ["/moved.mp3"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_production_refuses_loopback_before_connecting(media, connects, host):
    url = media.serve_file("/recording.mp3")

    with pytest.raises(UnsafeURL, match="loopback"):
        fetch(url.replace("127.0.0.1", host), PRODUCTION_POLICY)

    assert connects == []
    assert media.connections == 0


def test_the_connection_is_checked_even_when_the_url_was_not(media, connects):
    # A client of make_client refuses on its own, at connect time, without check_url first.
    url = media.serve_file("/recording.mp3")

    with make_client(PRODUCTION_POLICY) as client, pytest.raises(UnsafeURL, match="loopback"):
        client.get(url.replace("127.0.0.1", "localhost"))

    assert connects == []


def test_dns_rebinding_is_refused_at_connect_time(media, monkeypatch, connects):
    # The name is public when the URL is checked and loopback when the connection is made.
    url = media.serve_file("/recording.mp3").replace("127.0.0.1", "recordings.example")
    answers = iter(["93.184.215.14", "127.0.0.1"])
    asked = []

    def rebinding_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        assert host == "recordings.example"
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)

    with pytest.raises(UnsafeURL, match=r"recordings\.example \(127\.0\.0\.1\) is a loopback address"):
        fetch(url, PRODUCTION_POLICY)

    assert len(asked) == 2  # once when the URL was given, once at connect time
    assert connects == []
    assert media.connections == 0


def test_a_body_cut_short_of_its_content_length_is_a_length_mismatch(media):
    whole = RECORDED_CALL.read_bytes()
    url = media.cut_short("/recording.mp3", whole[:10_000], announced=len(whole))

    with pytest.raises(LengthMismatch) as raised:
        fetch(url)

    assert (raised.value.expected, raised.value.received) == (RECORDED_CALL_SIZE, 10_000)
    assert raised.value.retryable


def test_an_announced_body_over_the_cap_is_refused_before_reading(media):
    url = media.serve_file("/recording.mp3")

    with pytest.raises(TooLarge) as raised:
        fetch(url, max_bytes=RECORDED_CALL_SIZE - 1)

    assert raised.value.declared == RECORDED_CALL_SIZE
    assert not raised.value.retryable


def test_an_unannounced_body_over_the_cap_stops_at_the_cap(media):
    url = media.serve_unannounced("/endless.mp3", 5 * MB)
    into = io.BytesIO()

    with pytest.raises(TooLarge):
        download(url, into, max_bytes=100_000, policy=DEVELOPMENT_POLICY)

    assert len(into.getvalue()) <= 100_000


def test_a_body_exactly_at_the_cap_is_accepted(media):
    url = media.serve_file("/recording.mp3")

    result, _ = fetch(url, max_bytes=RECORDED_CALL_SIZE)

    assert result.size == RECORDED_CALL_SIZE


def test_a_server_that_never_answers_times_out(media):
    url = media.hang("/recording.mp3")
    started = time.monotonic()

    with pytest.raises(TimedOut):
        fetch(url, timeout=0.5)

    assert time.monotonic() - started < 5


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline(media):
    # A byte every 50 ms: no single wait nears the 5 s timeout, so only the deadline can stop it.
    url = media.trickle("/recording.mp3")
    deadline = 0.5

    with make_client(DEVELOPMENT_POLICY, timeout=5, deadline=None) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut) as raised:
            fetch(url, deadline=deadline, client=client)
        took = time.monotonic() - started

    assert raised.value.retryable
    assert deadline <= took < deadline * 2


def test_a_server_trickling_its_body_is_cut_off_at_the_deadline(media):
    def trickle():
        for _ in range(1000):
            time.sleep(0.05)
            yield b"x"

    media.answers["/recording.mp3"] = Answer(200, {"Content-Length": "1000"}, trickle)
    deadline = 0.5

    with make_client(DEVELOPMENT_POLICY, timeout=5, deadline=None) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            fetch(media.url("/recording.mp3"), deadline=deadline, client=client)
        took = time.monotonic() - started

    assert deadline <= took < deadline * 2


def test_each_request_of_a_client_ends_by_its_deadline_redirects_included(media):
    media.redirect("/first", "/second")
    media.trickle("/second")
    deadline = 0.5
    took = []

    with make_client(DEVELOPMENT_POLICY, timeout=5, deadline=deadline) as client:
        for _ in range(2):  # the second request has a deadline of its own, not what the first left
            started = time.monotonic()
            with pytest.raises(httpx.TimeoutException):
                client.post(media.url("/first"), content=b"{}")
            took.append(time.monotonic() - started)

    assert all(deadline <= seconds < deadline * 2 for seconds in took), took
    assert media.fetches("/second") == 2


def test_a_closed_port_is_a_network_error_worth_retrying():
    with pytest.raises(NetworkError) as raised:
        fetch(f"http://127.0.0.1:{free_port()}/recording.mp3")

    assert raised.value.retryable


def test_development_allows_loopback(media):
    url = media.serve_file("/recording.mp3").replace("127.0.0.1", "localhost")

    result, _ = fetch(url, DEVELOPMENT_POLICY)

    assert result.sha256 == RECORDED_CALL_SHA256


def test_the_allow_list_opens_a_network_and_nothing_else(media):
    url = media.serve_file("/recording.mp3")
    opened = EgressPolicy.from_networks(False, ["127.0.0.0/8"])

    result, _ = fetch(url, opened)

    assert result.sha256 == RECORDED_CALL_SHA256
    with pytest.raises(UnsafeURL):
        check_url("http://10.0.0.1/recording.mp3", opened)
    with pytest.raises(UnsafeURL):
        check_url(url, EgressPolicy.from_networks(False, ["127.0.0.2/32"]))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://voice.africastalking.com/recording.mp3", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:70/", "scheme"),
        ("http://10.0.0.1/recording.mp3", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/recording.mp3", "link-local"),
        ("http://100.64.0.1/recording.mp3", "not a public address"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://[64:ff9b::a00:1]/recording.mp3", "private"),  # NAT64 of 10.0.0.1
        ("http://[64:ff9b::7f00:1]/recording.mp3", "loopback"),  # NAT64 of 127.0.0.1
        ("http://[::127.0.0.1]/recording.mp3", "not a public address"),  # IPv4-compatible
        ("http://[::8.8.8.8]/recording.mp3", "not a public address"),  # IPv4-compatible, deprecated
        ("http://[::ffff:0:7f00:1]/recording.mp3", "loopback"),  # IPv4-translated 127.0.0.1
        ("http://[::ffff:0:a00:1]/recording.mp3", "private"),  # IPv4-translated 10.0.0.1
        ("http://[64:ff9b:1::808:808]/recording.mp3", "not a public address"),  # local-use NAT64
        ("http://[fec0::1]/recording.mp3", "not a public address"),  # site-local
        ("http://[2002:a00:1::1]/recording.mp3", "private"),  # 6to4 of 10.0.0.1
        ("http://[2002:7f00:1::1]/recording.mp3", "loopback"),  # 6to4 of 127.0.0.1
        # Teredo: the server 65.54.227.120, the client (obfuscated in the last 32 bits) 127.0.0.1.
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/recording.mp3", "private|loopback"),
        ("http://224.0.0.1/", "multicast"),
    ],
)
def test_check_url_refuses_what_production_must_not_reach(url, reason):
    with pytest.raises(UnsafeURL, match=reason):
        check_url(url, PRODUCTION_POLICY)


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1"])  # NAT64, 6to4 of 8.8.8.8
def test_check_url_accepts_an_ipv6_form_of_a_public_ipv4_address(address):
    assert check_url(f"https://[{address}]/recording.mp3", PRODUCTION_POLICY).host == address


def test_check_url_refuses_credentials_without_repeating_them():
    with pytest.raises(UnsafeURL, match="credentials") as raised:
        check_url("https://user:hunter2@voice.africastalking.com/recording.mp3", DEVELOPMENT_POLICY)

    assert "hunter2" not in str(raised.value)


def test_check_url_refuses_a_name_with_any_private_answer(monkeypatch):
    def split_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", split_getaddrinfo)

    with pytest.raises(UnsafeURL, match=r"10\.1\.2\.3"):
        check_url("https://recordings.example/x.mp3", PRODUCTION_POLICY)


def test_check_url_accepts_a_public_address():
    assert check_url("https://93.184.215.14/recording.mp3", PRODUCTION_POLICY).host == "93.184.215.14"


def test_a_redirect_away_from_http_is_refused(media):
    url = media.redirect("/moved.mp3", "file:///etc/passwd")

    with pytest.raises(UnsafeURL):
        fetch(url)


def test_endless_redirects_stop(media):
    url = media.redirect("/loop.mp3", "/loop.mp3")

    with pytest.raises(TooManyRedirects):
        fetch(url)

    assert len(media.requests) == egress.MAX_REDIRECTS + 1


def test_a_huge_redirect_body_is_not_read(media):
    media.serve_file("/final.mp3")
    url = media.redirect("/moved.mp3", "/final.mp3", body=b"x" * (2 * egress.MAX_REDIRECT_BODY))

    with pytest.raises(TooLarge):
        fetch(url)


@pytest.mark.slow
def test_memory_stays_flat_while_downloading_a_large_body(media, tmp_path):
    size = 50 * MB
    url = media.serve_generated("/long-call.mp3", size)
    tracemalloc.start()
    try:
        with open(os.devnull, "wb") as sink:
            result = download(url, sink, max_bytes=size, policy=DEVELOPMENT_POLICY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.size == size
    assert peak < 2 * MB, f"peak {peak / MB:.1f} MB while downloading {size / MB:.0f} MB"

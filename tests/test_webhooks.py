"""Telling clients: signed status events (Standard Webhooks), delivered at least once by the worker."""

import base64
import json
import os
import time

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from recordings_service.extensions import db
from recordings_service.persistence.models import Job, JobKind, WebhookEvent
from testkit.receiver import Receiver
from tests.support import drain, fixture_call, recorded_call

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
CALLBACK = "/api/v1/voice/callback"
LOOKUP = "/api/v1/voice/recordings/"
RECORDED = fixture_call("recorded-call")
SESSION = RECORDED[0]["sessionId"]
# Attempts a few milliseconds apart: a test can run a whole schedule (8 attempts, as Standard Webhooks').
FAST = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_RETRY_SCHEDULE": [0, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]}


def settle(app, until, seconds: float = 20):
    """Run the due jobs until ``until()`` holds."""
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "gave up waiting"
        drain(app)
        time.sleep(0.02)


def register(client, url: str, recording_id: str = "conf_hooked", **fields):
    return client.post(
        "/api/v1/voice/recordings",
        json={"recording_id": recording_id, "session_ids": [SESSION], "status_callback_url": url, **fields},
    )


def events_of(receiver: Receiver) -> list[dict]:
    return [json.loads(request.body) for request in receiver.received]


def test_each_change_reaches_both_endpoints_signed_with_the_lookups_body(make_app, media):
    with Receiver() as own, Receiver() as everything:
        app = make_app(WEBHOOK_URL=everything.url, PUBLIC_BASE_URL="https://recordings.example", **FAST)
        client = app.test_client()
        assert register(client, own.url).status_code == 201
        for fields in recorded_call(media):
            client.post(CALLBACK, data=fields)
        settle(app, lambda: len(own.received) == 2 and len(everything.received) == 2)

    body = client.get(LOOKUP + "conf_hooked").json
    for receiver in (own, everything):
        for request in receiver.received:
            # The receiver's own check, with the package docs/api.md shows.
            Webhook(SECRET).verify(request.body, request.headers)
            assert request.headers["Content-Type"] == "application/json" and "Cookie" not in request.headers
    sent = events_of(own)
    assert [event["type"] for event in sent] == ["recording.processing", "recording.completed"]
    assert sent[-1]["data"] == body  # the lookup's body, as it was when it changed
    assert sent[0]["data"]["updated_at"] < sent[1]["data"]["updated_at"]  # a receiver keeps the later one
    # One webhook-id per event, the same to every endpoint.
    ids = [[request.headers["webhook-id"] for request in receiver.received] for receiver in (own, everything)]
    assert ids[0] == ids[1] and len(set(ids[0])) == 2


def test_a_receiver_failing_three_times_gets_the_event_again_with_the_same_id(make_app, media):
    with Receiver(statuses=[500, 503, 502]) as hooks:
        app = make_app(**FAST)
        client = app.test_client()
        register(client, hooks.url)
        client.post(CALLBACK, data=RECORDED[0])
        client.post(CALLBACK, data=RECORDED[-1])  # processing: one event
        settle(app, lambda: len(hooks.received) == 4)

    assert len({request.headers["webhook-id"] for request in hooks.received}) == 1
    for request in hooks.received:
        Webhook(SECRET).verify(request.body, request.headers)
    [delivery] = client.get(LOOKUP + "conf_hooked/deliveries").json["items"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == ("done", 4, 200)
    assert (
        delivery["type"] == "recording.processing"
        and delivery["event_id"] == hooks.received[0].headers["webhook-id"]
    )


def test_410_gone_stops_at_once_and_other_failures_give_up_after_the_schedule(make_app, runner):
    with Receiver(statuses=[410]) as gone, Receiver(statuses=[500] * 20) as broken:
        app = make_app(WEBHOOK_URL=broken.url, **FAST)
        client = app.test_client()
        register(client, gone.url)
        client.post(CALLBACK, data=fixture_call("unanswered-call")[-1] | {"sessionId": SESSION})  # failed
        settle(app, lambda: len(broken.received) == 8)
        time.sleep(0.05)
        drain(app)
        metrics = client.get("/metrics").text

        deliveries = {d["url"]: d for d in client.get(LOOKUP + "conf_hooked/deliveries").json["items"]}
        assert (deliveries[gone.url]["state"], deliveries[gone.url]["attempts"]) == ("failed", 1)
        assert (deliveries[broken.url]["state"], deliveries[broken.url]["attempts"]) == ("failed", 8)
        assert len(gone.received) == 1 and len(broken.received) == 8
        assert 'jobs{kind="deliver_webhook",state="failed"} 2.0' in metrics  # given up, and counted

        # An operator sends one again once the receiver is mended.
        broken.statuses.clear()
        result = runner.invoke(args=["recordings", "redeliver", str(deliveries[broken.url]["id"])])
        assert result.exit_code == 0, result.output
        drain(app)
        assert len(broken.received) == 9
        assert broken.received[-1].headers["webhook-id"] == broken.received[0].headers["webhook-id"]
    listing = runner.invoke(args=["recordings", "deliveries", "conf_hooked"]).output
    assert "recording.failed" in listing and "done" in listing and "last=410" in listing


def test_a_receiver_trickling_its_answer_is_cut_off_at_the_timeout_and_tried_again(make_app, media):
    # A byte every 50 ms: each wait is short, so only a deadline on the whole exchange ends it.
    timeout = 0.5
    app = make_app(WEBHOOK_TIMEOUT_SECONDS=timeout, **FAST)
    client = app.test_client()
    assert register(client, media.trickle("/hooks")).status_code == 201
    for fields in recorded_call(media):
        client.post(CALLBACK, data=fields)

    drain(app)
    time.sleep(timeout)  # the receiver sees the last connection close within a byte or two

    assert len(media.trickled) == media.fetches("/hooks") >= 1
    assert all(seconds < timeout * 2 for seconds in media.trickled), media.trickled
    with app.app_context():
        jobs = db.session.execute(sa.select(Job).filter_by(kind=JobKind.DELIVER_WEBHOOK)).scalars().all()
        assert jobs and all(job.state.value == "pending" and "Timeout" in job.last_error for job in jobs)


def test_no_secret_no_status_callback_url(make_app):
    client = make_app().test_client()

    response = register(client, "https://client.example/hooks")

    assert response.status_code == 422 and "WEBHOOK_SECRET" in response.json["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hooks",  # a private address
        "http://169.254.169.254/latest/meta-data",  # link-local: a cloud's metadata service
        "http://localhost:8000/hooks",  # a name that resolves to loopback
        "ftp://client.example/hooks",
    ],
)
def test_production_refuses_status_callback_urls_into_private_networks(make_app, url):
    client = make_app(EGRESS_ALLOW_PRIVATE=False, **FAST).test_client()

    response = register(client, url)

    assert response.status_code == 422, response.json
    assert response.json["detail"].startswith("Invalid request: status_callback_url")
    assert client.get(LOOKUP + "conf_hooked").status_code == 404  # nothing registered


def test_a_delivery_is_checked_again_when_it_connects(make_app):
    with Receiver() as private:
        # WEBHOOK_URL is the operator's: its connection is checked against the policy, like any other.
        app = make_app(WEBHOOK_URL=private.url, EGRESS_ALLOW_PRIVATE=False, **FAST)
        client = app.test_client()
        client.post(CALLBACK, data=RECORDED[0])
        client.post(CALLBACK, data=RECORDED[-1])
        drain(app)

    assert private.received == []  # refused before connecting
    [refused] = client.get(LOOKUP + SESSION + "/deliveries").json["items"]
    assert (refused["state"], refused["attempts"]) == ("failed", 1) and "127.0.0.1" in refused["last_error"]


def test_a_redirect_is_not_followed(make_app):
    with Receiver(redirect_to="http://169.254.169.254/latest/meta-data") as redirecting:
        app = make_app(WEBHOOK_URL=redirecting.url, **FAST)
        client = app.test_client()
        client.post(CALLBACK, data=RECORDED[0])
        client.post(CALLBACK, data=RECORDED[-1])
        settle(app, lambda: len(redirecting.received) == 8)

    [redirected] = client.get(LOOKUP + SESSION + "/deliveries").json["items"]
    assert (redirected["state"], redirected["last_status"]) == ("failed", 302)


def test_a_deleted_recordings_events_keep_nothing_personal_and_are_not_sent_again(make_app, media):
    with Receiver() as hooks:
        app = make_app(**FAST)
        client, runner = app.test_client(), app.test_cli_runner()
        register(client, hooks.url)
        for fields in recorded_call(media, "/recording/abc.mp3"):
            if "recordingUrl" in fields:  # AT's URLs carry a signature
                fields = {**fields, "recordingUrl": fields["recordingUrl"] + "?signature=s3cr3t"}
            client.post(CALLBACK, data=fields)
        settle(app, lambda: len(hooks.received) == 2)
        completed = events_of(hooks)[-1]
        assert completed["data"]["recording_url"] and completed["data"]["audio_url"]
        deliveries = client.get(LOOKUP + "conf_hooked/deliveries").json["items"]

        assert client.delete(LOOKUP + "conf_hooked").status_code == 204
        settle(app, lambda: len(hooks.received) == 3)
        refused = runner.invoke(args=["recordings", "redeliver", str(deliveries[-1]["id"])])
        drain(app)
        listing = runner.invoke(args=["recordings", "deliveries", "conf_hooked"]).output

    assert refused.exit_code != 0 and "deleted" in refused.output
    assert [event["type"] for event in events_of(hooks)] == [
        "recording.processing",
        "recording.completed",
        "recording.deleted",
    ]
    with app.app_context():
        stored = json.dumps(db.session.execute(sa.select(WebhookEvent.message)).scalars().all())
    for personal in ("s3cr3t", "/recording/abc.mp3", completed["data"]["audio_url"]):
        assert personal not in stored and personal not in listing
    assert "recording.completed" in listing  # the deliveries are still listed, redacted

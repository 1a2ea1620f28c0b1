"""The ``deliver_webhook`` job: post one event to one endpoint, signed as Standard Webhooks prescribe.

The signature headers are ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
(HMAC-SHA256 with WEBHOOK_SECRET). ``webhook-id`` is the event's, the same on every attempt, for the
receiver to de-duplicate on.

Delivery is at least once. A 2xx is done. Any other answer, a timeout (WEBHOOK_TIMEOUT_SECONDS bounds
the whole exchange, headers included) or a refused connection is tried again on
WEBHOOK_RETRY_SCHEDULE (Standard Webhooks' schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
10 h), then given up. ``410 Gone`` gives up at once, and so does an address the egress policy
refuses. Redirects are not followed (a 3xx is a failed attempt), and the client sends no cookie or
credential of the service.
"""

import json
import logging
from datetime import timedelta

import httpx
from flask import current_app
from standardwebhooks.webhooks import Webhook

from ..domain.clock import utcnow
from ..exceptions import EgressError, UnsafeURL
from ..integrations import egress
from ..persistence import queue
from ..persistence.models import Job, JobKind
from ..recordings import events
from .jobs import Done, GiveUp, Kind, Outcome, Retry

log = logging.getLogger(__name__)


def deliver_webhook(claim: queue.Claim) -> Outcome:
    """Run one attempt of a delivery."""
    delivery = events.delivery_for(claim)
    if delivery is None:
        return Done()
    config = current_app.config
    body = json.dumps(delivery.message, separators=(",", ":"))
    now = utcnow()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery.event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(config["WEBHOOK_SECRET"]).sign(delivery.event_id, now, body),
    }
    policy = egress.EgressPolicy.from_config(config)
    try:
        seconds = config["WEBHOOK_TIMEOUT_SECONDS"]  # the whole delivery's, not each wait's
        with egress.make_client(policy, timeout=seconds, deadline=seconds, follow_redirects=False) as client:
            response = client.post(delivery.url, content=body, headers=headers)
    except UnsafeURL as error:
        return _gave_up(claim, str(error), None)
    except (EgressError, httpx.HTTPError) as error:
        return failed(claim, f"{type(error).__name__}: {error}")
    if 200 <= response.status_code < 300:
        return Done(response.status_code)
    error = f"answered {response.status_code}"
    if response.status_code == 410:
        return _gave_up(claim, error, response.status_code)
    return failed(claim, error, response.status_code)


def failed(claim: queue.Claim, error: str, status: int | None = None) -> Outcome:
    """The rule for a failed attempt (``status`` the endpoint's answer, if any): again on
    WEBHOOK_RETRY_SCHEDULE, given up once it is spent."""
    schedule = current_app.config["WEBHOOK_RETRY_SCHEDULE"]
    if claim.attempts >= len(schedule):
        return _gave_up(claim, error, status)
    return Retry(utcnow() + timedelta(seconds=schedule[claim.attempts]), error, status)


def _gave_up(claim: queue.Claim, error: str, status: int | None) -> GiveUp:
    log.warning("gave up delivery %s: %s", claim.pk, error)
    return GiveUp(error, status)


def record(job: Job, outcome: Outcome) -> None:
    """Keep the endpoint's last answer (its HTTP status) with the delivery."""
    job.last_status = outcome.detail


KIND = Kind(JobKind.DELIVER_WEBHOOK, deliver_webhook, failed, threads="WEBHOOK_CONCURRENCY", record=record)

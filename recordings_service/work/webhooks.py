"""The ``deliver_webhook`` job: post one event to one endpoint, signed as Standard Webhooks prescribe
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``, HMAC-SHA256 with WEBHOOK_SECRET).

At least once: a 2xx is done; any other answer, a timeout (WEBHOOK_TIMEOUT_SECONDS bounds the whole
exchange, headers included) or a connection refused is tried again on WEBHOOK_RETRY_SCHEDULE (Standard
Webhooks': at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), then given up; ``410 Gone`` gives up at once, and so does an address the egress policy refuses. ``webhook-id`` is the
event's, the same on every attempt, for the receiver to de-duplicate on. Redirects are not followed (a
3xx is a failed attempt), and the client sends no cookie or credential of the service.
"""

import json
import logging
from datetime import timedelta

import httpx
from flask import current_app
from standardwebhooks.webhooks import Webhook

from ..domain.clock import utcnow
from ..integrations import egress
from ..persistence import queue
from ..recordings import events

log = logging.getLogger(__name__)


def deliver_webhook(claim: queue.Claim) -> None:
    """Run one attempt of a delivery."""
    delivery = events.delivery_for(claim)
    if delivery is None:
        return
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
    except egress.UnsafeURL as error:
        _failed(claim, delivery, None, str(error), final=True)
        return
    except (egress.EgressError, httpx.HTTPError) as error:
        _failed(claim, delivery, None, f"{type(error).__name__}: {error}")
        return
    if 200 <= response.status_code < 300:
        events.delivered(claim, response.status_code)
    else:
        _failed(
            claim,
            delivery,
            response.status_code,
            f"answered {response.status_code}",
            final=response.status_code == 410,
        )


def _failed(
    claim: queue.Claim, delivery: events.Delivery, status: int | None, error: str, final: bool = False
) -> None:
    schedule = current_app.config["WEBHOOK_RETRY_SCHEDULE"]
    if final or claim.attempts >= len(schedule):
        log.warning("gave up delivering %s to %s: %s", delivery.event_id, httpx.URL(delivery.url).host, error)
        events.not_delivered(claim, status, error, None)
        return
    events.not_delivered(claim, status, error, utcnow() + timedelta(seconds=schedule[claim.attempts]))

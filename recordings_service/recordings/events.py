"""Telling clients: each change of a recording's status becomes an event, written in the transaction of
the change, and one delivery job per endpoint (the recording's ``status_callback_url`` and WEBHOOK_URL).
The worker posts them, signed (work/deliver_webhook.py). Every change of state goes through ``set_state``.

An event is ``{"type": "recording.completed", "timestamp": ..., "data": <the lookup's body>}``; the body
carries ``status`` and ``updated_at``, so a receiver can drop an event older than what it has.
"""

import json
import uuid
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select

from ..domain.clock import format_timestamp, utcnow
from ..domain.rules import RecordingState, Status
from ..exceptions import EgressError, OfDeletedRecording, UnusableEndpoint
from ..extensions import db
from ..integrations import egress
from ..persistence import queue
from ..persistence.database import single_read
from ..persistence.models import Job, JobKind, JobState, Recording, WebhookEvent
from . import public

TYPES = {
    Status.PROCESSING: "recording.processing",
    Status.COMPLETED: "recording.completed",
    Status.FAILED: "recording.failed",
}
DELETED = "recording.deleted"
# What the stored events of a deleted recording keep of its body: nothing about people or where its
# audio was (AT's URL and its signature, the audio's URL, fields added later).
NOT_PERSONAL = frozenset(
    {
        "recording_id",
        "status",
        "duration",
        "created_at",
        "processed_at",
        "failure_reason",
        "audio_removed_at",
        "updated_at",
    }
)


def set_state(recording: Recording, state: RecordingState) -> None:
    """Give ``recording`` its new state; when that changes its status, tell its endpoints."""
    was = recording.status
    recording.state = state
    if recording.status is not was and recording.status in TYPES:
        announce(recording, TYPES[recording.status])


def check_endpoint(url: str) -> None:
    """Refuse, with ``UnusableEndpoint`` saying why, a URL that events could not be posted to: no
    WEBHOOK_SECRET to sign them with, or an address the egress policy refuses (a private one, in production)."""
    config = current_app.config
    if not config["WEBHOOK_SECRET"]:
        raise UnusableEndpoint("this service has no WEBHOOK_SECRET to sign events with")
    try:
        egress.check_url(url, egress.EgressPolicy.from_config(config))
    except EgressError as error:
        raise UnusableEndpoint(str(error)) from None


def endpoints(recording: Recording) -> list[str]:
    """Who is told of ``recording``: its own status_callback_url, and WEBHOOK_URL."""
    urls = [recording.status_callback_url, current_app.config["WEBHOOK_URL"]]
    return list(dict.fromkeys(url for url in urls if url))


def announce(recording: Recording, kind: str) -> None:
    """In the current transaction: write the event ``kind`` of ``recording`` and a delivery per endpoint."""
    targets = endpoints(recording)
    if not targets:
        return
    db.session.flush()  # updated_at as it is stored
    now = utcnow()
    event = WebhookEvent(
        event_id=f"msg_{uuid.uuid4().hex}",
        recording_pk=recording.pk,
        type=kind,
        message={
            "type": kind,
            "timestamp": format_timestamp(now),
            "data": json.loads(public.render(recording).body),
        },
        created_at=now,
    )
    db.session.add(event)
    db.session.flush()
    for url in targets:
        queue.enqueue(
            db.session, JobKind.DELIVER_WEBHOOK, recording_pk=recording.pk, event_pk=event.pk, target_url=url
        )


def redact(recording: Recording) -> None:
    """In the current transaction: blank what is personal in every stored event of ``recording``."""
    stored = select(WebhookEvent).filter_by(recording_pk=recording.pk)
    for event in db.session.execute(stored).scalars():
        data = {key: value if key in NOT_PERSONAL else None for key, value in event.message["data"].items()}
        event.message = {**event.message, "data": data}


def redeliver(delivery_pk: int) -> bool:
    """Make delivery ``delivery_pk`` due again, as new; False when there is no such delivery. Raises
    ``OfDeletedRecording`` for an event of a deleted recording (but its ``recording.deleted``)."""
    query = (
        select(WebhookEvent.type, Recording.deleted_at)
        .join(Job, Job.event_pk == WebhookEvent.pk)
        .join(Recording, Recording.pk == WebhookEvent.recording_pk)
        .where(Job.pk == delivery_pk)
    )
    with single_read() as connection:
        found = connection.execute(query).first()
    if found is not None and found.deleted_at is not None and found.type != DELETED:
        raise OfDeletedRecording(f"delivery {delivery_pk} is of a {found.type} event of a deleted recording")
    return queue.requeue(delivery_pk, JobKind.DELIVER_WEBHOOK)


@dataclass(frozen=True)
class Delivery:
    """One event to post to one endpoint."""

    event_id: str
    message: dict
    url: str


def delivery_for(claim: queue.Claim) -> Delivery | None:
    query = (
        select(WebhookEvent.event_id, WebhookEvent.message, Job.target_url)
        .join(Job, Job.event_pk == WebhookEvent.pk)
        .where(Job.pk == claim.pk)
    )
    with single_read() as connection:
        row = connection.execute(query).first()
    return None if row is None else Delivery(*row)


_DELIVERIES = (
    select(
        Job.pk.label("pk"),
        WebhookEvent.event_id,
        WebhookEvent.type,
        Job.target_url,
        Job.state,
        Job.attempts,
        Job.last_status,
        Job.last_error,
        Job.run_at,
        WebhookEvent.created_at,
    )
    .join(WebhookEvent, WebhookEvent.pk == Job.event_pk)
    .join(Recording, Recording.pk == Job.recording_pk)
    .order_by(Job.pk)
)


def deliveries(recording_id: str, include_deleted: bool = False) -> list[dict] | None:
    """The deliveries of ``recording_id``'s events, oldest first; None when there is no such recording."""
    query = _DELIVERIES.where(Recording.recording_id == recording_id)
    exists = select(Recording.pk).where(Recording.recording_id == recording_id)
    if not include_deleted:
        exists = exists.where(Recording.deleted_at.is_(None))
    with single_read() as connection:
        if connection.execute(exists).first() is None:
            return None
    with single_read() as connection:
        rows = connection.execute(query).all()
    return [
        {
            "id": row.pk,
            "event_id": row.event_id,
            "type": row.type,
            "url": row.target_url,
            "state": row.state.value,
            "attempts": row.attempts,
            "last_status": row.last_status,
            "last_error": row.last_error,
            "next_attempt_at": row.run_at if row.state is JobState.PENDING else None,
            "created_at": row.created_at,
        }
        for row in rows
    ]

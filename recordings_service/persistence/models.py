"""Database models. Every timestamp is stored and returned in UTC."""

import dataclasses
import enum
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..domain.clock import utcnow
from ..domain.rules import (
    FAILURE_REASON_MAX_LENGTH,
    RECORDING_ID_MAX_LENGTH,
    AudioStatus,
    LegAudio,
    LegFacts,
    LegState,
    RecordingState,
    Status,
)
from ..extensions import db

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """A timestamp that goes in aware and comes out aware in UTC, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ColumnsAs:
    """A row's columns seen as one domain dataclass ``kind``, by field name: read whole, assigned whole."""

    def __init__(self, kind: type):
        self.kind = kind

    def __get__(self, row, owner=None):
        if row is None:
            return self
        return self.kind(**{field.name: getattr(row, field.name) for field in dataclasses.fields(self.kind)})

    def __set__(self, row, values) -> None:
        for field in dataclasses.fields(values):
            setattr(row, field.name, getattr(values, field.name))


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    """A Python enum stored as its value ("completed"): a VARCHAR with a CHECK constraint everywhere."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


StatusType = _enum(Status, "status")


class Recording(db.Model):
    """A recording: one or more AT calls (its legs) and what clients see of them."""

    __tablename__ = "voice_recordings"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(RECORDING_ID_MAX_LENGTH), unique=True)
    status: Mapped[Status] = mapped_column(StatusType, default=Status.RECORDING)
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(FAILURE_REASON_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Numbers AT is told to dial (and record) when a call of this recording comes in: all at once, the
    # first to answer bridged and recorded, or one after another (``dial_sequential``).
    dial: Mapped[list[str] | None] = mapped_column(JSON)
    dial_sequential: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Made by a callback for a session nobody had named (named after it): the registration or call
    # start that names the session later takes its sessions and callbacks, and this row goes.
    provisional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Why Africa's Talking placed none of the calls this recording started (the start's verdict, which
    # replay starts from, as live did).
    start_failure: Mapped[str | None] = mapped_column(String(FAILURE_REASON_MAX_LENGTH))
    # The leg whose stored audio the recording shows (its primary leg), once stored.
    audio_session_id: Mapped[str | None] = mapped_column(String(RECORDING_ID_MAX_LENGTH))
    # When retention (AUDIO_RETENTION_DAYS) removed that audio: the recording stays, its audio_url goes.
    audio_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the client asked to be told of this recording's changes (signed webhooks), besides WEBHOOK_URL.
    status_callback_url: Mapped[str | None] = mapped_column(Text)
    # Deleted on request: its audio and personal data are gone; the row stays so that nothing revives it.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("duration IS NULL OR duration >= 0", name="duration_not_negative"),
        # Listing is newest first, optionally by status, paged by (created_at, id).
        Index("ix_voice_recordings_created_at_id", "created_at", "id"),
        Index("ix_voice_recordings_status_created_at_id", "status", "created_at", "id"),
    )

    def __repr__(self) -> str:
        return f"<Recording {self.recording_id} {self.status}>"

    # What the lifecycle rules decide (domain.rules.RecordingState).
    state = ColumnsAs(RecordingState)


class Leg(db.Model):
    """One Africa's Talking call (``sessionId``) of a recording, a leg: what its callbacks said, and its
    audio once fetched, verified and stored.

    A call the service starts is a leg before AT names it: ``number`` and ``direction`` set, no
    ``session_id`` until AT's answer to the start (or the call's first callback) gives it."""

    __tablename__ = "voice_legs"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(RECORDING_ID_MAX_LENGTH), unique=True)
    # Calls the service started: the number called, Outbound, and AT's status for it (Queued...), null
    # until AT's answer to the start has been read.
    number: Mapped[str | None] = mapped_column(String(32), index=True)
    direction: Mapped[str | None] = mapped_column(String(16))
    at_status: Mapped[str | None] = mapped_column(String(64))
    recording_pk: Mapped[int] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    heard: Mapped[bool] = mapped_column(Boolean, default=False)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)
    ended_well: Mapped[bool] = mapped_column(Boolean, default=False)
    duration: Mapped[int | None] = mapped_column(Integer)
    call_duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(FAILURE_REASON_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # What became of the leg's recording, once its URL came (domain.rules.LegAudio).
    url_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # the give-up counts from it
    audio_status: Mapped[AudioStatus | None] = mapped_column(_enum(AudioStatus, "audio_status"))
    audio_failure: Mapped[str | None] = mapped_column(String(32))
    audio_error: Mapped[str | None] = mapped_column(Text)  # why the last attempt failed, for people
    audio_key: Mapped[str | None] = mapped_column(String(255))  # where the bytes are, in AUDIO_STORAGE_URL
    audio_size: Mapped[int | None] = mapped_column(BigInteger)
    audio_sha256: Mapped[str | None] = mapped_column(String(64))
    audio_content_type: Mapped[str | None] = mapped_column(String(100))
    audio_duration: Mapped[int | None] = mapped_column(Integer)
    audio_stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    audio_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # by retention or deletion

    # What the session's callbacks taught (domain.rules.LegFacts).
    facts = ColumnsAs(LegFacts)

    @property
    def audio(self) -> LegAudio | None:
        if self.audio_status is None:
            return None
        return LegAudio(self.audio_status, self.audio_duration, self.audio_stored_at, self.audio_failure)

    @property
    def state(self) -> LegState:
        return LegState(self.session_id, self.facts, self.audio)


class StoredCallback(db.Model):
    """Every callback AT posted and the service accepted, as it came: the record replay rebuilds from."""

    __tablename__ = "voice_callbacks"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(RECORDING_ID_MAX_LENGTH))
    recording_pk: Mapped[int] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    fields: Mapped[dict[str, str]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the fields: equal for exact duplicates
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_voice_callbacks_session_id_digest", "session_id", "digest"),)


class WebhookEvent(db.Model):
    """A change of a recording that clients are told of: written in the transaction of the change.

    ``message`` is what is posted, whole (``{"type", "timestamp", "data"}``); ``event_id`` is its
    ``webhook-id``, the same on every attempt and to every endpoint, for receivers to de-duplicate on.
    """

    __tablename__ = "webhook_events"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    recording_pk: Mapped[int] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobKind(enum.StrEnum):
    """The kinds of background work, each run by its handler in work/."""

    FETCH_AUDIO = "fetch_audio"  # fetch, verify and store a leg's recording (work/fetch_audio.py)
    DELIVER_WEBHOOK = "deliver_webhook"  # post one event to one endpoint, signed (work/deliver_webhook.py)


class JobState(enum.StrEnum):
    PENDING = "pending"  # to run at run_at (again, after a failure), unless a worker's lease holds it
    DONE = "done"
    FAILED = "failed"  # given up; last_error says why


class Job(db.Model):
    """A piece of background work, written in the same transaction as the fact that calls for it.

    A worker claims a due job by taking a lease on it (``leased_until``); a worker that dies lets its
    lease run out and another takes the job. Attempts, the next attempt and the last error stay here.
    """

    __tablename__ = "jobs"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    recording_pk: Mapped[int | None] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    leg_pk: Mapped[int | None] = mapped_column(ForeignKey("voice_legs.id", ondelete="CASCADE"), index=True)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "state"), default=JobState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A webhook delivery: which event, to where, and the endpoint's last answer (HTTP status).
    event_pk: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    target_url: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        # Workers look for due pending jobs, oldest first.
        Index("ix_jobs_state_run_at", "state", "run_at"),
    )


class IdempotencyKey(db.Model):
    """A call start's ``Idempotency-Key``: the request it came with (a hash) and, once given, the answer,
    which a retry with the same key and body gets again instead of a second call."""

    __tablename__ = "idempotency_keys"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request's JSON, canonical
    recording_pk: Mapped[int | None] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    response_status: Mapped[int | None] = mapped_column(Integer)  # null while the start is under way
    response_body: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(db.Model):
    """A key clients send as ``Authorization: Bearer <key>``; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WorkerProcess(db.Model):
    """A worker process, as its heartbeat last wrote it: ``recordings worker --check`` reads these."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # host:pid:unique part
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    jobs_in_hand: Mapped[int] = mapped_column(Integer)

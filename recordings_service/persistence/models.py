"""Database models. Every timestamp is stored and returned in UTC."""

import dataclasses
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
)
from sqlalchemy.orm import Mapped, mapped_column

from ..domain.clock import utcnow
from ..domain.recordings import (
    FAILURE_REASON_MAX_LENGTH,
    RECORDING_ID_MAX_LENGTH,
    CallFacts,
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


# Stored as its value ("completed"), a VARCHAR with a CHECK constraint on every database.
StatusType = Enum(
    Status,
    name="status",
    native_enum=False,
    create_constraint=True,
    length=16,
    values_callable=lambda statuses: [status.value for status in statuses],
    validate_strings=True,
)


class Recording(db.Model):
    """A recording of a conference call, as clients see it."""

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
    # Numbers AT is told to dial (and record) when a call of this recording comes in.
    dial: Mapped[list[str] | None] = mapped_column(JSON)

    __table_args__ = (
        CheckConstraint("duration IS NULL OR duration >= 0", name="duration_not_negative"),
        # Listing is newest first, optionally by status, paged by (created_at, id).
        Index("ix_voice_recordings_created_at_id", "created_at", "id"),
        Index("ix_voice_recordings_status_created_at_id", "status", "created_at", "id"),
    )

    def __repr__(self) -> str:
        return f"<Recording {self.recording_id} {self.status}>"

    # What the lifecycle rules decide (domain.recordings.RecordingState).
    state = ColumnsAs(RecordingState)


class CallSession(db.Model):
    """One Africa's Talking call (``sessionId``) of a recording, and what its callbacks said."""

    __tablename__ = "voice_call_sessions"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(RECORDING_ID_MAX_LENGTH), unique=True)
    recording_pk: Mapped[int] = mapped_column(
        ForeignKey("voice_recordings.id", ondelete="CASCADE"), index=True
    )
    heard: Mapped[bool] = mapped_column(Boolean, default=False)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)
    ended_well: Mapped[bool] = mapped_column(Boolean, default=False)
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(FAILURE_REASON_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # What the session's callbacks taught (domain.recordings.CallFacts).
    facts = ColumnsAs(CallFacts)


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


class ApiKey(db.Model):
    """A key clients send as ``Authorization: Bearer <key>``; only its SHA-256 is kept."""

    __tablename__ = "api_keys"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

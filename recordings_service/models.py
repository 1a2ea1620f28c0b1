"""Database models. Every timestamp is stored and returned in UTC."""

from datetime import UTC, datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import Mapped, mapped_column

from .domain import RECORDING_ID_MAX_LENGTH, Status
from .extensions import db
from .timeutil import utcnow

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


def _in(column: str, values) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Recording(db.Model):
    """A recording of a conference call, as clients see it."""

    __tablename__ = "voice_recordings"

    pk: Mapped[int] = mapped_column("id", BigId, primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(RECORDING_ID_MAX_LENGTH), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.RECORDING.value)
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_in("status", Status), name="status"),
        CheckConstraint("duration IS NULL OR duration >= 0", name="duration_not_negative"),
        # Listing is newest first, optionally by status, paged by (created_at, id).
        Index("ix_voice_recordings_created_at_id", "created_at", "id"),
        Index("ix_voice_recordings_status_created_at_id", "status", "created_at", "id"),
    )

    def __repr__(self) -> str:
        return f"<Recording {self.recording_id} {self.status}>"

"""UTC time, in one place: the clock, and the API's timestamp form."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """Format ``value`` as the API does: ``2024-01-15T10:00:00.000Z`` (UTC, milliseconds)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"

"""A FastAPI stack to compare with: FastAPI, a SQLAlchemy ORM model of the table and a Session per request,
served by uvicorn with 2 workers (uvloop and httptools, as ``uvicorn[standard]`` picks them):

    DATABASE_URL=... uvicorn --workers 2 bench.fastapi_stack:app

Written as FastAPI's own tutorial writes it (a ``get_db`` dependency yielding a Session, a sync view run in
the threadpool, a pydantic response model). It answers the lookup with the first seven fields of
the service's body, ``...000Z`` timestamps, 404 ``{"detail": "Recording not found"}``.
"""

import os
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, field_serializer
from sqlalchemy import DateTime, Integer, String, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

URL = os.environ.get("DATABASE_URL", "sqlite:///instance/recordings.db").replace(
    "postgresql://", "postgresql+psycopg://", 1
)
engine = create_engine(URL, connect_args={"check_same_thread": False} if URL.startswith("sqlite") else {})
SessionLocal = sessionmaker(bind=engine, autoflush=False)


class Base(DeclarativeBase):
    pass


class Recording(Base):
    __tablename__ = "voice_recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    duration: Mapped[int | None] = mapped_column(Integer)
    recording_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_reason: Mapped[str | None] = mapped_column(String(255))


class RecordingResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    recording_id: str
    status: str
    duration: int | None
    recording_url: str | None
    created_at: datetime
    processed_at: datetime | None
    failure_reason: str | None

    @field_serializer("created_at", "processed_at")
    def timestamp(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        # SQLite gives the stored UTC wall time, naive; PostgreSQL an aware datetime.
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


app = FastAPI(title="Voice recordings")


def get_db():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/api/v1/voice/recordings/{recording_id}", response_model=RecordingResponse)
def get_recording(recording_id: str, db: Annotated[Session, Depends(get_db)]):
    recording = db.scalars(select(Recording).where(Recording.recording_id == recording_id)).first()
    if recording is None:
        raise HTTPException(status_code=404, detail="Recording not found")
    return recording


@app.get("/healthz")
def healthz():
    return {"status": "ok"}

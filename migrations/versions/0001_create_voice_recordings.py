"""Create voice_recordings, the table behind the recording lookup.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "voice_recordings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recording_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('recording', 'processing', 'completed', 'failed')",
            name=op.f("ck_voice_recordings_status"),
        ),
        sa.CheckConstraint(
            "duration IS NULL OR duration >= 0", name=op.f("ck_voice_recordings_duration_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_recordings")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_voice_recordings_recording_id")),
    )
    op.create_index("ix_voice_recordings_created_at_id", "voice_recordings", ["created_at", "id"])
    op.create_index(
        "ix_voice_recordings_status_created_at_id", "voice_recordings", ["status", "created_at", "id"]
    )


def downgrade():
    op.drop_index("ix_voice_recordings_status_created_at_id", table_name="voice_recordings")
    op.drop_index("ix_voice_recordings_created_at_id", table_name="voice_recordings")
    op.drop_table("voice_recordings")

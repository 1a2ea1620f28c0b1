"""Call sessions (AT sessionId -> recording), every stored callback, and the numbers to dial.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "voice_call_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("recording_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("heard", sa.Boolean(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("ended_well", sa.Boolean(), nullable=False),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("recording_url", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_pk"],
            ["voice_recordings.id"],
            name=op.f("fk_voice_call_sessions_recording_pk_voice_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_call_sessions")),
        sa.UniqueConstraint("session_id", name=op.f("uq_voice_call_sessions_session_id")),
    )
    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_voice_call_sessions_recording_pk"), ["recording_pk"], unique=False
        )

    op.create_table(
        "voice_callbacks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("recording_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("duplicate", sa.Boolean(), nullable=False),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_pk"],
            ["voice_recordings.id"],
            name=op.f("fk_voice_callbacks_recording_pk_voice_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voice_callbacks")),
    )
    with op.batch_alter_table("voice_callbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voice_callbacks_recording_pk"), ["recording_pk"], unique=False)
        batch_op.create_index("ix_voice_callbacks_session_id_digest", ["session_id", "digest"], unique=False)

    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dial", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_column("dial")

    with op.batch_alter_table("voice_callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_voice_callbacks_session_id_digest")
        batch_op.drop_index(batch_op.f("ix_voice_callbacks_recording_pk"))

    op.drop_table("voice_callbacks")
    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voice_call_sessions_recording_pk"))

    op.drop_table("voice_call_sessions")

"""Calls the service starts (legs before AT names them, idempotency keys) and provisional recordings.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigId, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("recording_pk", BigId, nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_pk"],
            ["voice_recordings.id"],
            name=op.f("fk_idempotency_keys_recording_pk_voice_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("key", name=op.f("uq_idempotency_keys_key")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_idempotency_keys_recording_pk"), ["recording_pk"], unique=False)

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.alter_column("session_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("number", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("direction", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("at_status", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_voice_call_sessions_number"), ["number"], unique=False)

    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dial_sequential", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("provisional", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("start_failure", sa.String(length=128), nullable=True))

    # Recordings a callback made for a session nobody had named are named after that session and carry
    # nothing a client gave: they are provisional, so a registration naming the session adopts them.
    op.execute(
        "UPDATE voice_recordings SET provisional = true"
        " WHERE dial IS NULL AND status_callback_url IS NULL AND deleted_at IS NULL"
        " AND recording_id IN (SELECT session_id FROM voice_call_sessions"
        " WHERE voice_call_sessions.recording_pk = voice_recordings.id)"
    )


def downgrade():
    # Legs AT never named cannot be kept once a leg must have a session id.
    op.execute("DELETE FROM voice_call_sessions WHERE session_id IS NULL")
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_column("start_failure")
        batch_op.drop_column("provisional")
        batch_op.drop_column("dial_sequential")

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_voice_call_sessions_number"))
        batch_op.drop_column("at_status")
        batch_op.drop_column("direction")
        batch_op.drop_column("number")
        batch_op.alter_column("session_id", existing_type=sa.String(length=64), nullable=False)

    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_recording_pk"))

    op.drop_table("idempotency_keys")

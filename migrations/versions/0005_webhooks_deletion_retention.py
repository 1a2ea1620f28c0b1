"""Webhook events and their deliveries; deleted recordings and audio removed by retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("recording_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_pk"],
            ["voice_recordings.id"],
            name=op.f("fk_webhook_events_recording_pk_voice_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_webhook_events_event_id")),
    )
    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_events_recording_pk"), ["recording_pk"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("target_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_status", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_jobs_event_pk"), ["event_pk"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_jobs_event_pk_webhook_events"),
            "webhook_events",
            ["event_pk"],
            ["id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audio_removed_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audio_removed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("status_callback_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("status_callback_url")
        batch_op.drop_column("audio_removed_at")

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.drop_column("audio_removed_at")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_jobs_event_pk_webhook_events"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_jobs_event_pk"))
        batch_op.drop_column("last_status")
        batch_op.drop_column("target_url")
        batch_op.drop_column("event_pk")

    with op.batch_alter_table("webhook_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_events_recording_pk"))

    op.drop_table("webhook_events")

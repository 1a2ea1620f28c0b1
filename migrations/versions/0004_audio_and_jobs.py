"""Each leg's audio (fetched, verified, stored) and the jobs table the workers take work from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recording_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("session_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "done",
                "failed",
                name="state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["recording_pk"],
            ["voice_recordings.id"],
            name=op.f("fk_jobs_recording_pk_voice_recordings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_pk"],
            ["voice_call_sessions.id"],
            name=op.f("fk_jobs_session_pk_voice_call_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_recording_pk"), ["recording_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_session_pk"), ["session_pk"], unique=False)
        batch_op.create_index("ix_jobs_state_run_at", ["state", "run_at"], unique=False)

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url_received_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "audio_status",
                sa.Enum(
                    "pending",
                    "stored",
                    "failed",
                    name="audio_status",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("audio_failure", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("audio_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("audio_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("audio_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("audio_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("audio_content_type", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("audio_duration", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("audio_stored_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audio_session_id", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("voice_recordings", schema=None) as batch_op:
        batch_op.drop_column("audio_session_id")

    with op.batch_alter_table("voice_call_sessions", schema=None) as batch_op:
        batch_op.drop_constraint("audio_status", type_="check")
        batch_op.drop_column("audio_stored_at")
        batch_op.drop_column("audio_duration")
        batch_op.drop_column("audio_content_type")
        batch_op.drop_column("audio_sha256")
        batch_op.drop_column("audio_size")
        batch_op.drop_column("audio_key")
        batch_op.drop_column("audio_error")
        batch_op.drop_column("audio_failure")
        batch_op.drop_column("audio_status")
        batch_op.drop_column("url_received_at")

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_run_at")
        batch_op.drop_index(batch_op.f("ix_jobs_session_pk"))
        batch_op.drop_index(batch_op.f("ix_jobs_recording_pk"))

    op.drop_table("jobs")

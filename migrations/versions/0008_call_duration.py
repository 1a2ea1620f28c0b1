"""A leg's whole call duration (AT's durationInSeconds), beside the recorded leg's.

The fetch job checks a recording against it. Replay fills it from the stored callbacks.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("voice_call_sessions") as batch:
        batch.add_column(sa.Column("call_duration", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("voice_call_sessions") as batch:
        batch.drop_column("call_duration")

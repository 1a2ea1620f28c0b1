"""Name a call leg a leg in the schema too: ``voice_call_sessions`` becomes ``voice_legs``.

``jobs.session_pk`` becomes ``jobs.leg_pk``, and the indexes and constraints take the names the
naming convention gives them under the new names.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    _rename(
        ("voice_call_sessions", "voice_legs"),
        ("session_pk", "leg_pk"),
    )


def downgrade():
    _rename(
        ("voice_legs", "voice_call_sessions"),
        ("leg_pk", "session_pk"),
    )


def _rename(tables, columns):
    (old, new), (old_column, new_column) = tables, columns
    op.rename_table(old, new)
    op.alter_column("jobs", old_column, new_column_name=new_column)
    indexes = [
        (new, f"ix_{old}_recording_pk", f"ix_{new}_recording_pk", "recording_pk"),
        (new, f"ix_{old}_number", f"ix_{new}_number", "number"),
        ("jobs", f"ix_jobs_{old_column}", f"ix_jobs_{new_column}", new_column),
    ]
    if op.get_bind().dialect.name == "postgresql":
        for _, was, becomes, _ in indexes:
            op.execute(f"ALTER INDEX {was} RENAME TO {becomes}")
        constraints = [
            (new, f"pk_{old}", f"pk_{new}"),
            (new, f"uq_{old}_session_id", f"uq_{new}_session_id"),
            (new, f"fk_{old}_recording_pk_voice_recordings", f"fk_{new}_recording_pk_voice_recordings"),
            (new, f"ck_{old}_audio_status", f"ck_{new}_audio_status"),
            ("jobs", f"fk_jobs_{old_column}_{old}", f"fk_jobs_{new_column}_{new}"),
        ]
        for table, was, becomes in constraints:
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {was} TO {becomes}")
        return
    # SQLite renames neither indexes nor constraints: make them again under their new names.
    for table, was, becomes, column in indexes:
        op.drop_index(was, table_name=table)
        op.create_index(becomes, table, [column])
    with op.batch_alter_table(new, recreate="always") as batch:
        batch.drop_constraint(f"uq_{old}_session_id", type_="unique")
        batch.create_unique_constraint(f"uq_{new}_session_id", ["session_id"])

"""``flask recordings ...``: commands for operators and local development."""

import json
import time

import click
from flask.cli import AppGroup

from .domain import Status
from .recordings import find_recording, list_recordings, seed_demo
from .schemas import recording_schema

recordings_cli = AppGroup("recordings", help="Inspect and manage voice recordings.")


@recordings_cli.command("show")
@click.argument("recording_id")
def show(recording_id: str) -> None:
    """Print one recording as the API returns it."""
    recording = find_recording(recording_id)
    if recording is None:
        raise click.ClickException(f"recording {recording_id!r} not found")
    click.echo(json.dumps(recording_schema.dump(recording), indent=2))


@recordings_cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only recordings in this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def list_command(status: str | None, limit: int) -> None:
    """List recordings, newest first."""
    for recording in list_recordings(Status(status) if status else None, limit):
        row = recording_schema.dump(recording)
        click.echo(
            f"{row['recording_id']:<24} {row['status']:<10} {row['created_at']}  "
            f"{'' if row['duration'] is None else row['duration']:>6}  {row['recording_url'] or ''}"
        )


@recordings_cli.command("seed-demo")
@click.option("--count", type=click.IntRange(0), default=1000, show_default=True)
def seed_demo_command(count: int) -> None:
    """Add COUNT realistic demo recordings (conf_0000000000 upward) and the contract's example.

    Ids that exist already are left alone, so running it again adds nothing.
    """
    started = time.perf_counter()
    added = seed_demo(count)
    click.echo(f"added {added} recordings in {time.perf_counter() - started:.1f}s")

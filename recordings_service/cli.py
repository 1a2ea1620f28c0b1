"""``flask recordings ...``: the operators' commands (the development ones are in ``devtools``)."""

import json
from datetime import timedelta

import click
import marshmallow as ma
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.exc import SQLAlchemyError

from config import parse_duration

from . import devtools
from .domain.clock import format_timestamp, utcnow
from .domain.rules import Status, is_valid_recording_id
from .exceptions import ApiKeyError, KeyReused, OfDeletedRecording, RecordingDeleted, StartInProgress
from .persistence import liveness, queue
from .persistence.models import JobState
from .recordings import call_starts, deletion, events, public
from .recordings.lifecycle import replay, sweep
from .recordings.public import recording_schema
from .schemas import CallStartSchema
from .web.auth import create_api_key, list_api_keys, revoke_api_key
from .web.calls import start_call_from
from .work.worker import Worker


def _a_possible_recording_id(_ctx, _param, recording_id: str) -> str:
    """``recording_id``, or the not-found error for an id no recording can have (one holding a NUL, say)."""
    if not is_valid_recording_id(recording_id):
        raise click.ClickException(f"recording {recording_id!r} not found")
    return recording_id


recordings_cli = AppGroup("recordings", help="Inspect and manage voice recordings.")


def init_app(app: Flask) -> None:
    devtools.register_commands(recordings_cli)
    app.cli.add_command(recordings_cli)


@recordings_cli.command("show")
@click.argument("recording_id", callback=_a_possible_recording_id)
def show(recording_id: str) -> None:
    """Print one recording as the API returns it."""
    rendered = public.read(recording_id)
    if rendered is None:
        raise click.ClickException(f"recording {recording_id!r} not found")
    click.echo(json.dumps(json.loads(rendered.body), indent=2))


@recordings_cli.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in Status]), help="Only recordings in this status."
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def list_command(status: str | None, limit: int) -> None:
    """List recordings, newest first."""
    recordings, _ = public.page(Status(status) if status else None, limit=limit)
    for recording in recordings:
        row = recording_schema.dump(recording)
        click.echo(
            f"{row['recording_id']:<24} {row['status']:<10} {row['created_at']}  "
            f"{'' if row['duration'] is None else row['duration']:>6}  {row['recording_url'] or ''}"
        )


@recordings_cli.command("start-call")
@click.option("--to", "to", multiple=True, required=True, help="A number AT calls (E.164); once per number.")
@click.option("--dial", multiple=True, help="A number each answered call is put through to, recorded.")
@click.option("--sequential", is_flag=True, default=None, help="Ring the --dial numbers one after another.")
@click.option("--from", "from_number", help="The AT number to call from (default AT_VOICE_NUMBER).")
@click.option("--recording-id", help="The recording's id (default: a new one).")
@click.option("--idempotency-key", help="Run again with the same key: the first answer, no second call.")
def start_call_command(to, dial, sequential, from_number, recording_id, idempotency_key) -> None:
    """Start recorded calls through Africa's Talking, as POST /api/v1/voice/calls does; print the answer.

    Exits non-zero, saying why, when AT placed none of the calls (the recording is then failed).
    """
    api = current_app.extensions["at_voice"]
    if api is None:
        raise click.ClickException("set AT_USERNAME and AT_API_KEY to start calls")
    request = {"to": list(to), "dial": list(dial) or None, "sequential": sequential, "from": from_number}
    request["recording_id"] = recording_id
    body = {key: value for key, value in request.items() if value is not None}
    try:
        start = start_call_from(CallStartSchema().load(body), current_app.config)
        answer = call_starts.start_call(start, api, idempotency_key, call_starts.request_hash(body))
    except (ma.ValidationError, ValueError) as error:
        raise click.BadParameter(str(error)) from error
    except (KeyReused, StartInProgress, RecordingDeleted) as error:
        raise click.ClickException(f"{type(error).__name__}: {error}") from error
    if answer.status >= 400:
        raise click.ClickException(answer.body["detail"])
    click.echo(json.dumps(answer.body, indent=2))


@recordings_cli.command("replay")
def replay_command() -> None:
    """Rebuild every leg and recording from the stored callbacks.

    Ends in the state live processing reached; prints the recordings that differed, if any.
    """
    report = replay()
    click.echo(f"replayed {report.recordings} recordings: {len(report.changed)} changed")
    for recording_id in report.changed:
        click.echo(f"changed: {recording_id}")


class Duration(click.ParamType):
    """A span of time as the settings take one (config.parse_duration): 30, 30s, 5m, 1h or 1d."""

    name = "duration"

    def convert(self, value, param, ctx) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return timedelta(seconds=parse_duration(value))
        except ValueError as error:
            self.fail(f"{value!r}: {error}", param, ctx)


@recordings_cli.command("sweep")
@click.option("--older-than", type=Duration(), default="30m", show_default=True)
def sweep_command(older_than: timedelta) -> None:
    """Fail recordings stuck in processing (call over, no URL) for longer than --older-than.

    Their failure_reason is recording_url_timeout; a URL arriving later still completes them.
    Meant for cron, e.g. every 5 minutes.
    """
    swept = sweep(older_than)
    click.echo(f"failed {len(swept)} recordings stuck in processing")
    for recording_id in swept:
        click.echo(f"failed: {recording_id}")


@recordings_cli.command("worker")
@click.option(
    "--concurrency", type=click.IntRange(1, 64), help="Fetch threads (default: WORKER_CONCURRENCY)."
)
@click.option("--drain", is_flag=True, help="Run the jobs due now, one at a time, then exit.")
@click.option(
    "--check",
    is_flag=True,
    help="List the workers' heartbeats; exit 0 if one beat within WORK_LEASE_SECONDS, else 1.",
)
@click.pass_context
def worker_command(ctx: click.Context, concurrency: int | None, drain: bool, check: bool) -> None:
    """Run the background jobs (fetching, verifying and storing recordings, delivering webhooks) and the
    periodic sweep.

    Runs until SIGTERM or Ctrl-C, then finishes or gives back the jobs in hand and exits 0. Exits 1 when
    it cannot work (its loops failing for WORK_FAILING_SECONDS, a thread dead), for its supervisor to
    restart it. Run as many as you like, on as many machines, against the same database.
    """
    app = current_app._get_current_object()
    if check:
        ctx.exit(_check_workers(app.config["WORK_LEASE_SECONDS"]))
    if concurrency:
        app.config["WORKER_CONCURRENCY"] = concurrency
    worker = Worker(app)
    if drain:
        click.echo(f"ran {worker.drain()} jobs")
    else:
        ctx.exit(worker.run())


def _check_workers(within: float) -> int:
    """Print each worker's last heartbeat; 0 when one beat within ``within`` seconds, else 1."""
    try:
        rows = liveness.workers()
    except SQLAlchemyError as error:
        click.echo(f"the database did not answer: {error}", err=True)
        return 1
    now = utcnow()
    alive = 0
    for row in rows:
        age = (now - row.beat_at).total_seconds()
        alive += age <= within
        click.echo(
            f"{row.name:<48} {'alive' if age <= within else 'silent':<6} beat {age:.0f} s ago,"
            f" {row.jobs_in_hand} jobs in hand, started {format_timestamp(row.started_at)}"
        )
    if not alive:
        click.echo(f"no worker has beaten in the last {within:.0f} s", err=True)
    return 0 if alive else 1


@recordings_cli.command("jobs")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def jobs_command(state: str | None, limit: int) -> None:
    """List background jobs, newest first: kind, leg, state, attempts, next attempt, last error."""
    for depth in queue.depth():
        click.echo(
            f"{depth.kind}: {depth.pending} pending ({depth.due} due, oldest waiting {depth.oldest_due_seconds:.0f} s),"
            f" {depth.done} done, {depth.failed} failed"
        )
    for job in queue.recent(JobState(state) if state else None, limit):
        when = format_timestamp(job.run_at) if job.state is JobState.PENDING else "-"
        click.echo(
            f"{job.pk:>8} {job.kind:<12} {job.session_id or '-':<40} {job.state.value:<8} attempts={job.attempts}"
            f" next={when} {job.last_error or ''}".rstrip()
        )


@recordings_cli.command("delete")
@click.argument("recording_id", callback=_a_possible_recording_id)
def delete_command(recording_id: str) -> None:
    """Delete RECORDING_ID: every leg's stored audio, the phone numbers and URLs it kept, the recording.

    As DELETE /api/v1/voice/recordings/RECORDING_ID does; its webhooks are told (recording.deleted).
    """
    deleted = deletion.delete_recording(recording_id, current_app.extensions["audio_storage"])
    if not deleted:
        raise click.ClickException(f"recording {recording_id!r} not found")
    click.echo(f"deleted {recording_id}")


@recordings_cli.command("deliveries")
@click.argument("recording_id", callback=_a_possible_recording_id)
def deliveries_command(recording_id: str) -> None:
    """List the webhook deliveries of RECORDING_ID's events: state, attempts, last answer (deleted ones too)."""
    found = events.deliveries(recording_id, include_deleted=True)
    if found is None:
        raise click.ClickException(f"recording {recording_id!r} not found")
    for delivery in found:
        when = format_timestamp(delivery["next_attempt_at"]) if delivery["next_attempt_at"] else "-"
        click.echo(
            f"{delivery['id']:>8} {delivery['type']:<22} {delivery['event_id']} {delivery['state']:<8}"
            f" attempts={delivery['attempts']} last={delivery['last_status'] or '-'} next={when}"
            f" {delivery['url']} {delivery['last_error'] or ''}".rstrip()
        )


@recordings_cli.command("redeliver")
@click.argument("delivery_id", type=int)
def redeliver_command(delivery_id: int) -> None:
    """Send delivery DELIVERY_ID again (an id from `deliveries`), as new: due at once, attempts afresh.

    A deleted recording's events are not sent again, but for its recording.deleted.
    """
    try:
        found = events.redeliver(delivery_id)
    except OfDeletedRecording as refusal:
        raise click.ClickException(f"{refusal}: not sent again") from None
    if not found:
        raise click.ClickException(f"no delivery {delivery_id}")
    click.echo(f"delivery {delivery_id} is due again")


@recordings_cli.command("create-api-key")
@click.argument("name")
def create_api_key_command(name: str) -> None:
    """Make an API key called NAME and print it: it is shown this once, and only its hash is kept."""
    try:
        click.echo(create_api_key(name))
    except ApiKeyError as error:
        raise click.ClickException(str(error)) from error


@recordings_cli.command("list-api-keys")
def list_api_keys_command() -> None:
    """List API keys: name, first characters, when made, and when revoked."""
    for key in list_api_keys():
        revoked = f"revoked {format_timestamp(key.revoked_at)}" if key.revoked_at else "active"
        click.echo(f"{key.name:<24} {key.prefix}...  made {format_timestamp(key.created_at)}  {revoked}")


@recordings_cli.command("revoke-api-key")
@click.argument("name")
def revoke_api_key_command(name: str) -> None:
    """Revoke the API key called NAME: requests with it are refused from now on."""
    try:
        revoke_api_key(name)
    except ApiKeyError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"revoked {name}")

"""The kinds of job the worker runs: one line each (work/jobs.py says what a kind is)."""

from . import deliver_webhook, fetch_audio

KINDS = [fetch_audio.KIND, deliver_webhook.KIND]

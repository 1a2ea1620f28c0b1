"""The kinds of job the worker runs: one line each (work/jobs.py says what a kind is)."""

from . import audio, webhooks

KINDS = [audio.KIND, webhooks.KIND]

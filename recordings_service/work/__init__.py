"""Background work: the worker that takes jobs from the durable queue (persistence/queue.py) and runs
them, and the periodic sweeps. ``flask --app wsgi recordings worker`` runs it."""

"""The HTTP surface: the blueprints, API keys, waiting lookups, request ids, logs and metrics."""

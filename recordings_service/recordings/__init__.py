"""Recordings as the service keeps them: what clients see, registration, callbacks applied, replay."""

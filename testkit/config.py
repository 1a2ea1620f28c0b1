"""The app's configuration for a test or a benchmark: TestingConfig on a given database."""

from config import TestingConfig


def config_for(url: str, **settings) -> type[TestingConfig]:
    """Return a TestingConfig subclass using the database at ``url``, with ``settings`` on top."""
    return type("TestConfig", (TestingConfig,), {"SQLALCHEMY_DATABASE_URI": url, **settings})

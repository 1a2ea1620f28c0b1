"""The lookup's read: one SELECT of at most one row, run on the driver's connection.

Why it exists: the lookup is the request clients make most, and on it SQLAlchemy's Connection,
execution context and Result cost more than the lookup's own work. With them, the service misses its
targets of latency against a hand-written handler (``make bench``; both paths' figures are in
bench/README.md). What it costs: this module redoes a part of SQLAlchemy's execution (each column's
result processor, ``DBAPIError`` wrapping, autocommit set and restored), it takes only statements whose
parameters need no converting, and it reaches one private method of SQLAlchemy's pool, only through
``_invalidate_pool``. SQLAlchemy is pinned; tests/test_keyed_read.py fails if an upgrade changes what
this relies on.
"""

import collections
from collections.abc import Callable

from flask import current_app
from sqlalchemy import Engine, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection


class KeyedRead:
    """A SELECT of at most one row, run on a connection of the reads' pool, outside any transaction.

    What a Connection would do that matters here, it does too:

    - the pool's checkout check, and its reset on return;
    - no transaction (autocommit on PostgreSQL, SQLite's own);
    - the reads' share of the pool (``database.Reads``);
    - errors raised as SQLAlchemy's ``DBAPIError``. A lost connection is invalidated and the pool
      marked stale, so that ``database.once_more_if_disconnected`` runs the request again on a fresh one.

    A statement whose parameters the driver cannot take as they are (expanding, or of a type that
    converts them) is refused when first compiled.
    """

    def __init__(self, statement: Select):
        self.statement = statement
        self._row = collections.namedtuple("Row", statement.selected_columns.keys())
        self._compiled: dict[tuple[str, str], tuple] = {}

    def first(self, parameters: dict, waiting: bool = False) -> tuple | None:
        """The row, as a named tuple of converted values, or None. ``waiting`` as ``single_read``'s."""
        reads = current_app.extensions["database_reads"]
        sql, positions, converters = self._compile(reads.engine.dialect)
        if positions is not None:
            parameters = tuple(parameters[name] for name in positions)
        with reads.share(waiting):
            row = _fetch_one(reads.engine, sql, parameters)
        if row is None:
            return None
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index])
        return self._row._make(values)

    def _compile(self, dialect) -> tuple[str, tuple[str, ...] | None, list[tuple[int, Callable]]]:
        """The SQL for ``dialect``, the order of its parameters (None: by name), and the columns' result
        processors (those that have one, by position)."""
        key = (dialect.name, dialect.driver)
        if key not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            for name, bind in compiled.binds.items():
                if bind.expanding or bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                    raise TypeError(
                        f"parameter {name!r} needs converting: run the statement with single_read"
                    )
            processors = [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in self.statement.selected_columns
            ]
            converters = [(index, convert) for index, convert in enumerate(processors) if convert is not None]
            positions = tuple(compiled.positiontup) if dialect.positional else None
            self._compiled[key] = (compiled.string, positions, converters)
        return self._compiled[key]


def _fetch_one(engine: Engine, sql: str, parameters) -> tuple | None:
    """Run ``sql`` on a pooled connection outside any transaction: its first row, as the driver gives it."""
    dialect = engine.dialect
    error_class = dialect.loaded_dbapi.Error
    try:
        connection = engine.raw_connection()  # the pool's: its checkout check runs
    except error_class as error:  # no connection to be had (refused, timed out): as a Connection says it
        raise DBAPIError.instance(
            None,
            None,
            error,
            error_class,
            connection_invalidated=dialect.is_disconnect(error, None, None),
            dialect=dialect,
        ) from error
    # PostgreSQL: autocommit for this statement, as ``Reads.engine`` sets it (no BEGIN, no ROLLBACK);
    # SQLite's connections are in its autocommit already (``database._configure_sqlite``).
    driver = connection.driver_connection if dialect.name == "postgresql" else None
    cursor = None
    try:
        if driver is not None:
            driver.autocommit = True
        cursor = connection.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchone()
        finally:
            cursor.close()
    except error_class as error:
        lost = dialect.is_disconnect(error, connection.dbapi_connection, cursor)
        if lost:
            _invalidate_pool(engine, connection, error)
        raise DBAPIError.instance(
            sql, parameters, error, error_class, connection_invalidated=lost, dialect=dialect
        ) from error
    finally:
        if driver is not None and connection.is_valid:
            try:
                driver.autocommit = False
            except error_class as error:  # cut off mid-statement: not a connection to hand on
                connection.invalidate(error)
        connection.close()  # back to the pool


def _invalidate_pool(engine: Engine, connection: PoolProxiedConnection, error: BaseException) -> None:
    """Invalidate ``connection`` and mark every connection the pool made before now as stale.

    What a Connection does on a disconnect: a host that rebooted leaves every pooled connection dead,
    and the checkout check sees none of them (no goodbye was sent). SQLAlchemy has no public way to
    do it for a raw connection; this is the one place the service calls its pool's private method.
    """
    engine.pool._invalidate(connection, error)

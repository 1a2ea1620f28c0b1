"""Engine set-up that the models do not show: SQLite made safe for several processes, PostgreSQL
connections checked cheaply, and the transactions reads and writes need."""

import select
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session


def begin_write(session: Session) -> None:
    """Start the transaction of a read-modify-write: on SQLite it takes the write lock up front.

    A read-only transaction the request already has open (an API key check, say) is ended first.
    Pass the Session itself (``db.session()``): the scoped proxy does not offer ``in_transaction``.
    """
    if session.in_transaction():
        session.rollback()
    session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})


@contextmanager
def single_read(engine: Engine) -> Iterator[Connection]:
    """A connection for one read statement, outside any transaction: no BEGIN and ROLLBACK around it.

    One statement sees one consistent snapshot on its own; the transaction would only add round trips
    (PostgreSQL) or statements (SQLite) to the lookup, the request clients make most.
    """
    if engine.dialect.name == "sqlite":
        options = {"sqlite_begin": None}
    else:
        options = {"isolation_level": "AUTOCOMMIT"}
    with engine.connect().execution_options(**options) as connection:
        yield connection


def configure_engine(engine: Engine) -> None:
    """Tune ``engine`` for its database."""
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    else:
        _configure_postgresql(engine)


def _configure_postgresql(engine: Engine) -> None:
    # A pooled connection that the server has closed (a restart, an idle timeout, a terminated backend)
    # must not reach a request. pool_pre_ping would find out with a SELECT 1 round trip per checkout,
    # which doubled the lookup's cost; instead look at the socket: an idle connection has nothing to
    # read, so readable means the server has sent its goodbye (or EOF). The pool then reconnects.
    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, _record, _proxy):
        if dbapi_connection.closed:
            raise DisconnectionError("the connection is closed")
        poll = select.poll()
        poll.register(dbapi_connection.pgconn.socket, select.POLLIN)
        if poll.poll(0):
            raise DisconnectionError("the server has closed the connection")


def _configure_sqlite(engine: Engine) -> None:
    # Several gunicorn workers share one SQLite file. WAL lets readers run beside the writer, the busy
    # timeout makes a writer wait for the lock instead of failing, and a read-modify-write transaction
    # takes the write lock up front (BEGIN IMMEDIATE): a plain BEGIN would read a snapshot that another
    # writer can make stale, which SQLite reports as an immediate "database is locked".
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        begin = connection.get_execution_options().get("sqlite_begin", "BEGIN")
        if begin is not None:  # None: one statement, in SQLite's autocommit (``single_read``)
            connection.exec_driver_sql(begin)


_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_ignoring_conflicts(session: Session, table: Table, rows: list[dict], unique: list[str]) -> int:
    """Insert ``rows`` into ``table``, leaving alone any row whose ``unique`` columns exist already.

    Safe against a concurrent insert of the same row: PostgreSQL waits for the other transaction and
    then skips the row, instead of failing on the unique constraint. Returns how many rows were new.
    """
    insert = _DIALECT_INSERTS[session.get_bind().dialect.name]
    # Counted with RETURNING: psycopg reports no rowcount for these inserts.
    statement = insert(table).on_conflict_do_nothing(index_elements=unique).returning(table.c[unique[0]])
    return len(session.execute(statement, rows).all())


def bulk_insert_ignoring_conflicts(session: Session, table: Table, rows: Iterable[dict], unique: str) -> None:
    """Insert many ``rows`` through the driver's bulk path, skipping rows whose ``unique`` value exists.

    A column a row leaves out is NULL: Python-side defaults are not applied here.

    For seeding and benchmarks, where a million rows through the ORM's per-row type handling takes
    over a minute. Values go to the driver as they are: aware datetimes for PostgreSQL are fine;
    for SQLite they are written in SQLAlchemy's own storage form so that they sort and read back alike.
    """
    columns = [column.name for column in table.columns if column.name != "id"]
    names = ", ".join(columns)
    connection = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        with connection.cursor() as cursor:
            # COPY cannot skip conflicts, so it fills a scratch table that one INSERT then merges.
            cursor.execute(
                f"CREATE TEMP TABLE bulk_rows ON COMMIT DROP AS SELECT {names} FROM {table.name} WITH NO DATA"
            )
            with cursor.copy(f"COPY bulk_rows ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row.get(name) for name in columns])
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM bulk_rows ON CONFLICT ({unique}) DO NOTHING"
            )
    else:
        placeholders = ", ".join("?" for _ in columns)
        connection.executemany(
            f"INSERT OR IGNORE INTO {table.name} ({names}) VALUES ({placeholders})",
            ([_sqlite_value(row.get(name)) for name in columns] for row in rows),
        )


def _sqlite_value(value):
    if isinstance(value, datetime):
        if value.utcoffset():
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
    return value

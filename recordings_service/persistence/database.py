"""Engine set-up that the models do not show (SQLite made safe for several processes, PostgreSQL
connections checked cheaply) and the two ways statements run: one read, or one write transaction."""

import select
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session

from ..extensions import db


@contextmanager
def write_transaction() -> Iterator[Session]:
    """The transaction of a read-modify-write, committed when the block ends, rolled back if it raises.

    On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``): a plain BEGIN would read a
    snapshot that another process's write can make stale, which SQLite answers with "database is
    locked". Reads that need no transaction use ``single_read`` and so never hold a second connection.
    """
    session = db.session()
    if session.in_transaction():
        raise RuntimeError("a write transaction must start on a session with none open")
    session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def single_read() -> Iterator[Connection]:
    """A connection for one read statement, outside any transaction: no BEGIN and ROLLBACK around it.

    One statement sees one consistent snapshot on its own; the transaction would only add round trips
    (PostgreSQL) or statements (SQLite) to the lookup, the request clients make most.
    """
    engine = db.engine
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

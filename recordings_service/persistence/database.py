"""How the service talks to its database: the engine's set-up and the ways statements run.

The set-up is what the models do not show: SQLite made safe for several processes, and PostgreSQL
connections checked cheaply. A statement runs as one read (``single_read``, or ``keyed_read.KeyedRead``
for the lookup) or inside one write transaction (``write_transaction``)."""

import functools
import logging
import select
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import ParamSpec, TypeVar

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..extensions import db

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


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
    try:
        # Inside the try: a connect that fails must not leave the session in a transaction.
        session.connection(execution_options={"sqlite_begin": "BEGIN IMMEDIATE"})
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def single_read(waiting: bool = False) -> Iterator[Connection]:
    """A connection for one read statement, outside any transaction: no BEGIN and ROLLBACK around it.

    One statement sees one consistent snapshot on its own; the transaction would only add round trips
    (PostgreSQL) or statements (SQLite) to the lookup, the request clients make most.

    Reads take at most all but one of the pool's connections, so a callback (a write) always finds
    one, however many lookups arrive at once. Requests asking to wait (``waiting``) take at most a
    third of those. Clients holding waits arrive in waves, since their waits end together and those
    told to come back later come back together, and a lookup must not queue behind a wave of them.
    """
    reads = current_app.extensions["database_reads"]
    with reads.share(waiting), reads.engine.connect() as connection:
        yield connection


def once_more_if_disconnected(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` once more, on a new connection, when the server had closed the one it used.

    A restart or a terminated backend closes every pooled connection; the checkout check below finds
    most of them, but not one the server is still closing as it is handed out. SQLAlchemy then marks
    the pool stale, so the second run gets a fresh connection. The first run's transaction died with
    its connection, so running it again applies it at most once (a commit whose answer was lost is
    the exception: the callbacks it could repeat are idempotent).
    """

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            log.warning("the database had closed a pooled connection: %s runs again", function.__qualname__)
            db.session.rollback()
            return function(*args, **kwargs)

    return run


def check_writable() -> None:
    """Raise ``SQLAlchemyError`` unless the database takes a write; the write is rolled back.

    A read-only SQLite file, a PostgreSQL standby or a read-only transaction default all answer reads.
    """
    with db.engine.connect() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
        connection.rollback()


def engine_options(config) -> dict:
    """SQLAlchemy engine options from the app's DB_* settings: pool, and timeouts on every wait."""
    options = {
        "pool_size": config["DB_POOL_SIZE"],
        "max_overflow": config["DB_MAX_OVERFLOW"],
        "pool_timeout": config["DB_POOL_TIMEOUT"],
    }
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        milliseconds = int(config["DB_STATEMENT_TIMEOUT"] * 1000)
        options["connect_args"] = {
            "connect_timeout": config["DB_CONNECT_TIMEOUT"],
            "options": f"-c statement_timeout={milliseconds}",
            # A server that stops answering mid-statement: the connection fails after this, not never.
            "tcp_user_timeout": milliseconds + 5000,
        }
    return options


def warn_if_over_budget(processes: int) -> None:
    """Log a warning when ``processes`` processes of this app, each filling its pool, would ask
    PostgreSQL for more connections than it accepts (``max_connections`` less those it reserves).

    A database that cannot be asked (down, or not answering) is logged and left: the check must never
    keep the service from starting, which would take /healthz and the error answers down with it.
    """
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    per_process = current_app.config["DB_POOL_SIZE"] + current_app.config["DB_MAX_OVERFLOW"]
    try:
        with single_read() as connection:
            most = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = int(connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
    except SQLAlchemyError as error:
        log.warning("connection budget: not checked, the database did not answer: %s", error)
        return
    wanted = processes * per_process
    if wanted > most - reserved:
        log.warning(
            "connection budget: %d processes x %d pooled connections = %d, but PostgreSQL accepts %d"
            " (max_connections %d less %d reserved): lower WEB_CONCURRENCY or DB_POOL_SIZE",
            processes,
            per_process,
            wanted,
            most - reserved,
            most,
            reserved,
        )
    else:
        log.info("connection budget: %d of the %d connections PostgreSQL accepts", wanted, most - reserved)


def init_app(app: Flask) -> None:
    """Tune the engine for its database and set how reads read (``Reads``)."""
    with app.app_context():
        configure_engine(db.engine)
        app.extensions["database_reads"] = Reads(
            db.engine, app.config["DB_POOL_SIZE"] + app.config["DB_MAX_OVERFLOW"]
        )


class Reads:
    """How reads run, and how much of the pool they may take.

    ``engine`` is the app's engine with the options of one statement outside a transaction, set once
    here rather than on each connection a lookup checks out. Reads take at most all but one of the
    pool's connections, so a write always finds one. Waiting requests take at most a third of those.
    """

    def __init__(self, engine: Engine, connections: int):
        if engine.dialect.name == "sqlite":
            self.engine = engine.execution_options(sqlite_begin=None)
        else:
            self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.reads = _bounded_semaphore(max(connections - 1, 1))
        self.waits = _bounded_semaphore(max((connections - 1) // 3, 1))

    @contextmanager
    def share(self, waiting: bool = False) -> Iterator[None]:
        """A read's place in its share of the pool (of the waiting requests' share too, if ``waiting``),
        held while the block runs."""
        with self.waits if waiting else nullcontext(), self.reads:
            yield


def _bounded_semaphore(value: int):
    """A bounded semaphore of threads, or of greenlets once gevent has patched ``threading``.

    threading's own, built on gevent's locks, would hand the worker to every other greenlet each time
    it is released (its Condition checks that it holds its lock by trying to take it again, and gevent
    yields on a failed try), so a lookup would wait behind every other request of the worker.
    """
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        from gevent.lock import BoundedSemaphore

        return BoundedSemaphore(value)
    return threading.BoundedSemaphore(value)


def configure_engine(engine: Engine) -> None:
    """Tune ``engine`` for its database."""
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    else:
        _configure_postgresql(engine)


def _configure_postgresql(engine: Engine) -> None:
    # A pooled connection that the server has closed (a restart, an idle timeout, a terminated backend)
    # must not reach a request. pool_pre_ping would find out with a SELECT 1 round trip per checkout,
    # as costly as the lookup itself. Instead look at the socket: an idle connection has nothing to
    # read, so readable means the server has sent its goodbye (or EOF), and the pool reconnects.
    # The look never waits, so it uses the original poll: gevent's (once ``select`` is patched) would
    # set up a watcher on its hub for every look.
    from gevent import monkey

    make_poll = monkey.get_original("select", "poll") if monkey.is_module_patched("select") else select.poll

    @event.listens_for(engine, "checkout")
    def on_checkout(dbapi_connection, _record, _proxy):
        if dbapi_connection.closed:
            raise DisconnectionError("the connection is closed")
        poll = make_poll()
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
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as error:
            # A read-only database (file permissions, ?mode=ro) cannot change its journal mode, but it
            # can still be read: lookups go on, writes fail, and /readyz says so.
            log.warning("SQLite journal mode left as it is: %s", error)
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

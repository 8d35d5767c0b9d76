"""Database engine and error translation (shell).

PostgreSQL in production, a SQLite file for a single-node run. SQLite gets WAL, a busy
timeout and foreign keys, and every transaction starts with ``BEGIN IMMEDIATE`` so two
writers never deadlock on a read-then-write upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from email_service.errors import StorageConflict, StorageUnavailable

logger = logging.getLogger(__name__)

#: Seconds a SQLite writer waits for another before giving up; listeners write rarely.
SQLITE_BUSY_TIMEOUT_S = 30
#: Seconds to wait for a PostgreSQL connection before the call fails as transient.
PG_CONNECT_TIMEOUT_S = 5
#: PostgreSQL connections a process keeps open. Every listener writes when it connects and
#: after each batch; with 5 kept open, one worker starting 1,000 folders opened and closed
#: 246 connections (bench/fanout.py), with 20 it opens 31.
PG_POOL_SIZE = 20
#: Connections opened beyond the pool in bursts; with the pool, 25 at most per process.
PG_POOL_OVERFLOW = 5


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url`` (already normalised by settings)."""
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW,
        connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S},
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction; database failures come out as ``StorageUnavailable``."""
    try:
        with engine.begin() as connection:
            yield connection
    except IntegrityError as exc:
        raise StorageConflict(f"database constraint: {type(exc.orig).__name__}") from exc
    except (OperationalError, DBAPIError) as exc:
        raise StorageUnavailable(f"database call failed: {type(exc.orig).__name__}") from exc
    except SQLAlchemyError as exc:
        raise StorageUnavailable(f"database call failed: {type(exc).__name__}") from exc


def check_database(engine: Engine) -> None:
    """Raise ``StorageUnavailable`` unless a trivial query succeeds."""
    with transaction(engine) as connection:
        connection.exec_driver_sql("SELECT 1")

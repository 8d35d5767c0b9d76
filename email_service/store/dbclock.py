"""SQL expressions for "now" and "now + N ms" on the database's clock (core: SQL only).

Leases and worker heartbeats are judged by the database clock, never a worker's, so two
workers with skewed clocks still agree on who holds what. PostgreSQL uses ``now()`` (the
transaction's start, consistent within one statement); SQLite a millisecond text timestamp
that sorts correctly as text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from email_service.store.schema import UtcDateTime

_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


class db_now(FunctionElement[Any]):
    """The database's current time."""

    type = UtcDateTime()
    inherit_cache = True
    name = "db_now"


class db_now_plus_ms(FunctionElement[Any]):
    """The database's current time plus a whole number of milliseconds (a literal)."""

    type = UtcDateTime()
    inherit_cache = False
    name = "db_now_plus_ms"

    def __init__(self, milliseconds: int) -> None:
        self.milliseconds = int(milliseconds)
        super().__init__()


@compiles(db_now, "postgresql")
def _pg_now(element: db_now, compiler: Any, **kw: Any) -> str:
    return "now()"


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: Any, **kw: Any) -> str:
    return _SQLITE_NOW


@compiles(db_now_plus_ms, "postgresql")
def _pg_now_plus(element: db_now_plus_ms, compiler: Any, **kw: Any) -> str:
    return f"(now() + interval '{element.milliseconds} milliseconds')"


@compiles(db_now_plus_ms, "sqlite")
def _sqlite_now_plus(element: db_now_plus_ms, compiler: Any, **kw: Any) -> str:
    seconds = element.milliseconds / 1000
    return f"strftime('%Y-%m-%d %H:%M:%f', 'now', '{seconds:+.3f} seconds')"

"""Alembic environment: runs migrations on the URL ``email-service migrate`` passes in."""

from __future__ import annotations

from alembic import context

from email_service.store.engine import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise SystemExit("migrations: no database URL given (run `email-service migrate`)")

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=engine.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

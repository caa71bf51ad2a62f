"""Alembic environment: runs inside the connection mailcli hands over."""

from alembic import context
from sqlalchemy import create_engine

connection = context.config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # `alembic` run by a developer: use the database mailcli would use
    from mailcli.config import load_settings

    engine = create_engine(load_settings().db_url)
    with engine.begin() as conn:
        context.configure(connection=conn, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()

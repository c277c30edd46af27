"""Alembic environment: runs migrations on the engine dnsbl would use for the configured URL."""

from __future__ import annotations

from typing import Any

from alembic import context

from dnsbl.db import make_engine
from dnsbl.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Whether the comparison of models and database considers `obj`: a model's foreign key
    declared for some databases only (`info["dialects"]`) counts on those alone."""
    if type_ != "foreign_key_constraint" or reflected:
        return True
    dialects = {d for key in obj.elements for d in key.info.get("dialects", ())}
    return not dialects or context.get_context().dialect.name in dialects


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", statement_timeout=0)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

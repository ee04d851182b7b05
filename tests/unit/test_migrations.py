"""The alembic history: one head, models and migrations agree, upgrade and downgrade work."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from unirtc.directory import migrate
from unirtc.directory.engine import make_engine
from unirtc.directory.models import Base


def test_oneLinearHistory() -> None:
    """
    If the migration scripts are read, there is exactly one head.
    """
    assert len(ScriptDirectory.from_config(migrate.alembic_config()).get_heads()) == 1


def test_headMatchesModels(database_url) -> None:
    """
    If an empty database is upgraded to head, autogenerate finds no difference from the models;
    the status reports it up to date; downgrading to base removes every table.
    """
    engine = make_engine(database_url)
    status = migrate.schema_status(engine)
    assert status.empty and not status.up_to_date
    migrate.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    status = migrate.schema_status(engine)
    assert status.up_to_date and not status.empty
    migrate.downgrade(engine)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()

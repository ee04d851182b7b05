"""Alembic, driven from the application: locate the scripts, upgrade, and compare with head.

The scripts live in the top-level ``migrations/`` folder of a checkout, and in
``<prefix>/share/unirtc/migrations`` once installed (setup.cfg's data_files).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect


def script_location() -> Path:
    candidates = [
        Path(__file__).resolve().parents[2] / "migrations",
        Path(sys.prefix) / "share" / "unirtc" / "migrations",
    ]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "alembic migrations not found in " + " or ".join(str(c) for c in candidates)
    )


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


@dataclass(frozen=True)
class SchemaStatus:
    current: tuple[str, ...]
    heads: tuple[str, ...]
    empty: bool  # no tables at all: a fresh database, safe to create

    @property
    def up_to_date(self) -> bool:
        return set(self.current) == set(self.heads)


def schema_status(engine: Engine) -> SchemaStatus:
    with engine.connect() as connection:
        current = tuple(MigrationContext.configure(connection).get_current_heads())
        empty = not inspect(connection).get_table_names()
    return SchemaStatus(current, heads(), empty)


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)

"""Shared fixtures: one PostgreSQL server per test session, a fresh database per request."""

from __future__ import annotations

import itertools

import pytest

from tests.postgres import PostgresServer

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A new, empty database on each backend the directory supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'directory.sqlite'}"
    return request.getfixturevalue("postgres_server").create_database(f"unirtc_test_{next(_names)}")

"""Shared fixtures: one PostgreSQL server per test session, a fresh database per request."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.postgres import PostgresServer

_names = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _scratch_working_directory(tmp_path_factory):
    """Run the tests in a scratch folder: trial's ``TestCase.mktemp()`` and hypothesis write
    relative to the working directory, which would otherwise be the checkout."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


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

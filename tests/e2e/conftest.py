"""e2e fixtures: a server harness per test, whose log is printed when the test fails."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ServerHarness


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def harness(request, tmp_path):
    """A configured, not yet started server; stopped (and its log shown on failure) afterwards."""
    server = ServerHarness(tmp_path / "server")
    yield server
    server.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- server log ({server.log_path}) ---\n{server.log()}")

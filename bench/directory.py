"""Directory throughput: account creation, cached and uncached credential reads, password checks.

Usage: .venv/bin/python bench/directory.py [--accounts N] [--database URL]
Prints one line per measure.  Runs the real Directory service (thread pool) on a real reactor.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task

from unirtc.directory import migrate, store
from unirtc.directory.engine import make_engine
from unirtc.directory.service import Directory


def report(name: str, count: int, seconds: float) -> None:
    print(f"{name}: {count / seconds:,.0f}/s ({count} in {seconds:.2f} s)")


async def run(url: str, accounts: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    started = time.perf_counter()
    with store.transaction(engine) as session:
        for i in range(accounts):
            store.create_account(session, f"user{i}", "falcot.com", f"password{i}")
    report("create_account (2 PBKDF2 + 4 HA1 each, one transaction)", accounts, time.perf_counter() - started)
    engine.dispose()

    directory = Directory(url, reactor, "n/a")
    directory.startService()
    try:
        started = time.perf_counter()
        await defer.gatherResults([directory.credentials(f"user{i}", "falcot.com") for i in range(accounts)])
        report("credentials, uncached (thread pool, concurrent)", accounts, time.perf_counter() - started)
        started = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            await defer.gatherResults([directory.credentials(f"user{i}", "falcot.com") for i in range(accounts)])
        report("credentials, cached", accounts * rounds, time.perf_counter() - started)
        started = time.perf_counter()
        results = await defer.gatherResults(
            [directory.verify_password(f"user{i}", "falcot.com", f"password{i}") for i in range(accounts)])
        assert all(results)
        report("verify_password (PBKDF2-SHA-256, 4096 iterations)", accounts, time.perf_counter() - started)
    finally:
        directory.stopService()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=500)
    parser.add_argument("--database", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.sqlite'}"
    task.react(lambda _: defer.ensureDeferred(run(url, args.accounts)))


if __name__ == "__main__":
    main()

"""REGISTER-with-digest and call setups per second, unirtc and Kamailio 5.6 side by side.

Usage (from the repository root):
    .venv/bin/python bench/sip_register.py [--rates 50,100,200,400,800,1600,3200,6400,12800,25600]
        [--call-rates 10,20,40,80,160,320,640,1280] [--no-calls] [--seconds 5] [--users 50]
        [--transport u1|t1] [--servers unirtc,kamailio] [--refine 2]

For each server in turn (never both at once), on free loopback ports:

* unirtc: ``twistd -n unirtc`` started by the e2e harness (SQLite directory, log level warn),
  the users created with ``unirtc-ctl adduser --password-stdin``;
* Kamailio 5.6 from Debian: the stock ``/etc/kamailio/kamailio.cfg`` with WITH_AUTH and
  WITH_USRLOCDB on an SQLite file holding the same users and passwords, run from a temp dir as
  a foreground subprocess and killed at the end (see ``bench/kamailio_peer.py``).  Install it
  with ``apt-get install -y kamailio kamailio-sqlite-modules`` (the second package provides
  ``db_sqlite.so``); the benchmark never starts the system service.

SIPp then registers the users from a CSV injection file (``-inf``: REGISTER, 401, REGISTER
with MD5 digest, 200; ``bench/sipp/register_users.xml``) at rising offered rates until under
1% failed no longer holds, and bisects; then the same for authenticated call setups through
the proxy (``bench/sip_calls.py``).  Printed: one line per step, then one result line per
measure and server (the highest rate with under 1% failures and SIPp's response-time
distribution at that rate: for REGISTER, first REGISTER to 200; for calls, first INVITE to
200), then one line per measure with both rates and their ratio (unirtc / Kamailio).
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sip_calls import CALLEE, arguments, call_measure  # noqa: E402
from bench.sip_load import (  # noqa: E402
    BENCH_SIPP, DOMAIN, Outcome, Step, Target, bench_users, compare, run_step, sweep, write_users_csv)


def register_measure(users_csv: Path, transport: str, rates: list[float], seconds: float, refine: int):
    """The ``register`` measure for :func:`bench.sip_load.compare`."""

    def measure(folder: Path, target: Target, report: Callable[[Step], None]) -> Outcome:
        extra = ["-inf", str(users_csv), "-auth_uri", DOMAIN]
        return sweep(lambda rate: run_step(folder / f"rate-{rate:g}", target,
                                           BENCH_SIPP / "register_users.xml", rate, seconds,
                                           transport, extra),
                     rates, refine, report)

    return measure


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    parser = arguments("50,100,200,400,800,1600,3200,6400,12800,25600")
    parser.description = __doc__.splitlines()[0]
    parser.set_defaults(users=50)
    parser.add_argument("--call-rates", default="10,20,40,80,160,320,640,1280")
    parser.add_argument("--no-calls", action="store_true", help="registrations only")
    args = parser.parse_args()
    users = bench_users(args.users)
    with tempfile.TemporaryDirectory(prefix="unirtc-bench-") as tmp:
        folder = Path(tmp)
        csv_path = write_users_csv(folder / "users.csv", users)
        measures = {"register": register_measure(csv_path, args.transport,
                                                 [float(r) for r in args.rates.split(",")],
                                                 args.seconds, args.refine)}
        if not args.no_calls:
            measures["calls"] = call_measure(csv_path, args.transport,
                                             [float(r) for r in args.call_rates.split(",")],
                                             args.seconds, args.refine)
        lines = compare(folder, args.servers.split(","), users | dict([CALLEE]), args.transport, measures)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

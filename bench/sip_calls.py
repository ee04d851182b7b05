"""Authenticated call setups per second through the SIP proxy, unirtc and Kamailio side by side.

Usage (from the repository root):
    .venv/bin/python bench/sip_calls.py [--rates 10,20,40,80,160,320,640,1280] [--seconds 5] [--users 20]
        [--transport u1|t1] [--servers unirtc,kamailio] [--refine 2]

Each server in turn (never both at once) gets the same users and passwords (unirtc through
``unirtc-ctl adduser --password-stdin``, Kamailio in its ``subscriber`` table, see
``bench/kamailio_peer.py`` for how to install it), a SIPp phone registered as roland with
digest, and SIPp callers taken from a CSV injection file calling ``sip:roland@falcot.com``:
INVITE -> 407 -> ACK -> INVITE with credentials -> 100/180/200 -> ACK -> BYE -> 200 through
the proxy (two digest-checked INVITE transactions, a location lookup, Record-Route, and the
ACK and BYE routed back).  The offered rate rises until under 1% failed no longer holds (see
``bench/sip_load.py``), then is bisected.  Prints one line per step, then one result line per
server (highest rate and the call-setup time distribution, first INVITE to 200) and the ratio.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sip_load import (  # noqa: E402
    BENCH_SIPP, DOMAIN, E2E_SIPP, Outcome, Step, Target, bench_users, compare, free_port, run_step, sweep,
    write_users_csv)

CALLEE = ("roland", "roland-Bench-Secret")


def _answering_phone(folder: Path, transport: str, port: int) -> subprocess.Popen[bytes]:
    """A SIPp UAS answering every call on ``port``, returned once it has bound the port."""
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["sipp", "-sf", str(E2E_SIPP / "uas_call.xml"), "-t", transport, "-i", "127.0.0.1",
         "-p", str(port), "-mp", str(free_port()), "-nostdin", "-max_socket", "2000",
         "-key", "domain", DOMAIN, "-trace_err", "-error_file", str(folder / "uas_errors.log")],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kind = socket.SOCK_DGRAM if transport.startswith("u") else socket.SOCK_STREAM
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return process
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise TimeoutError(f"SIPp did not bind port {port}")


def call_measure(users_csv: Path, transport: str, rates: list[float], seconds: float, refine: int):
    """The ``calls`` measure for :func:`bench.sip_load.compare`."""

    def measure(folder: Path, target: Target, report: Callable[[Step], None]) -> Outcome:
        phone = free_port()
        answering = _answering_phone(folder, transport, phone)
        try:
            subprocess.run(
                ["sipp", f"127.0.0.1:{target.port}", "-sf", str(E2E_SIPP / "register_contact.xml"),
                 "-t", transport, "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
                 "-m", "1", "-nostdin", "-s", CALLEE[0], "-au", CALLEE[0], "-ap", CALLEE[1],
                 "-auth_uri", DOMAIN, "-key", "domain", DOMAIN, "-key", "contact_port", str(phone),
                 "-timeout", "20s", "-timeout_error"],
                cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            extra = ["-inf", str(users_csv), "-s", CALLEE[0], "-auth_uri", f"{CALLEE[0]}@{DOMAIN}"]
            return sweep(lambda rate: run_step(folder / f"rate-{rate:g}", target,
                                               BENCH_SIPP / "call_users.xml", rate, seconds,
                                               transport, extra),
                         rates, refine, report)
        finally:
            answering.kill()
            answering.wait()

    return measure


def arguments(rates: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default=rates, help="offered rates, comma-separated, ascending")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each step")
    parser.add_argument("--users", type=int, default=20, help="SIPp users (user0000...)")
    parser.add_argument("--transport", default="u1", help="SIPp -t value: u1 (UDP) or t1 (TCP)")
    parser.add_argument("--servers", default="unirtc,kamailio")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps after the first failure")
    return parser


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    args = arguments("10,20,40,80,160,320,640,1280").parse_args()
    users = bench_users(args.users)
    with tempfile.TemporaryDirectory(prefix="unirtc-bench-") as tmp:
        folder = Path(tmp)
        csv_path = write_users_csv(folder / "users.csv", users)
        rates = [float(r) for r in args.rates.split(",")]
        lines = compare(folder, args.servers.split(","), users | dict([CALLEE]), args.transport,
                        {"calls": call_measure(csv_path, args.transport, rates, args.seconds, args.refine)})
    print("\n".join(lines))


if __name__ == "__main__":
    main()

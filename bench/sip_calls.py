"""Call setups per second through the SIP proxy, driven by SIPp.

Usage: .venv/bin/python bench/sip_calls.py [--rates 10,25,50,100] [--seconds S] [--transport u1]
Starts the real server (twistd, SQLite) on loopback, registers roland's answering SIPp with
digest authentication, then for each rate runs joe's SIPp caller for S seconds: every call is
INVITE -> 407 -> INVITE with credentials -> 100/180/200 -> ACK -> BYE -> 200 through the proxy
(two digest-authenticated INVITE transactions, a location lookup, Record-Route, and the ACK and
BYE routed back).  Prints one line per rate (calls/s attempted and completed, failures, mean
call-setup time from the authenticated INVITE to its 200) and the highest rate with under 1%
failed calls.  Kamailio is not installed here, so no side-by-side figure is printed.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import ServerHarness, free_port  # noqa: E402
from tests.e2e.test_sip_call import PASSWORDS, SIPP_DIR, start  # noqa: E402

DOMAIN = "falcot.com"


def sipp(server: ServerHarness, folder: Path, scenario: str, port: int, transport: str,
         *extra: str, client: bool = True) -> list[str]:
    argv = ["sipp", *([f"127.0.0.1:{server.ports['sip']}"] if client else []),
            "-sf", str(SIPP_DIR / scenario), "-t", transport, "-i", "127.0.0.1", "-p", str(port),
            "-mp", str(free_port()), "-nostdin", "-key", "domain", DOMAIN, "-max_socket", "2000",
            *extra]
    return argv


def last_stats(path: Path) -> dict[str, str]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    return rows[-1] if rows else {}


def run_rate(server: ServerHarness, folder: Path, rate: int, seconds: float, transport: str,
             phone: int) -> tuple[int, int, float, float]:
    """(successful calls, failed calls, elapsed seconds, mean setup ms) at ``rate`` calls/s."""
    calls = max(1, int(rate * seconds))
    stats = folder / f"uac_{rate}.csv"
    argv = sipp(server, folder, "uac_call.xml", free_port(), transport, "-s", "roland",
                "-key", "caller", "joe", "-au", "joe", "-ap", PASSWORDS["joe"],
                "-auth_uri", f"roland@{DOMAIN}", "-r", str(rate), "-m", str(calls), "-l", str(rate * 10),
                "-recv_timeout", "10000", "-timeout", str(int(seconds * 3 + 30)),
                "-trace_stat", "-stf", str(stats), "-fd", "1")
    started = time.monotonic()
    subprocess.run(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    row = last_stats(stats)
    ok, failed = int(row.get("SuccessfulCall(C)", 0)), int(row.get("FailedCall(C)", 0))
    return ok, failed, elapsed, _mean_ms(row.get("CallLength(C)", ""))


def _mean_ms(value: str) -> float:
    """SIPp writes durations as HH:MM:SS:microseconds."""
    parts = value.split(":")
    if len(parts) < 4:
        return float("nan")
    hours, minutes, secs, micros = (float(p) for p in parts[:4])
    return ((hours * 60 + minutes) * 60 + secs) * 1000 + micros / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="10,25,50,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--transport", default="u1", help="SIPp -t value: u1 (UDP) or t1 (TCP)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = ServerHarness(folder / "server")
        server.sections["server"]["log_level"] = "warn"
        start(server)
        phone = free_port()
        total = sum(max(1, int(int(r) * args.seconds)) for r in args.rates.split(","))
        answering = subprocess.Popen(sipp(server, folder, "uas_call.xml", phone, args.transport,
                                          "-m", str(total), "-max_recv_loops", "1000", client=False),
                                     cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            subprocess.run(sipp(server, folder, "register_contact.xml", free_port(), args.transport,
                                "-m", "1", "-s", "roland", "-au", "roland", "-ap", PASSWORDS["roland"],
                                "-auth_uri", DOMAIN, "-key", "contact_port", str(phone)),
                           cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=30)
            best = 0
            for rate in (int(r) for r in args.rates.split(",")):
                ok, failed, elapsed, call_ms = run_rate(server, folder, rate, args.seconds, args.transport, phone)
                attempted = ok + failed
                share = failed / attempted if attempted else 1.0
                if share < 0.01 and attempted:
                    best = rate
                print(f"proxy calls ({args.transport}) at {rate}/s offered: {ok} completed, {failed} failed "
                      f"({share:.1%}), {ok / elapsed:.1f} completed/s over {elapsed:.1f} s, "
                      f"mean call length {call_ms:.0f} ms (includes the scenario's 200 ms pause)")
            print(f"highest offered call rate with <1% failures: {best}/s")
        finally:
            answering.kill()
            answering.wait()
            server.stop()


if __name__ == "__main__":
    main()

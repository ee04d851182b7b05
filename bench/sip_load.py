"""SIPp load steps shared by the SIP benchmarks: servers under test, rate sweeps, response times.

A *step* runs one SIPp client scenario at a fixed offered rate for a few seconds and reads
SIPp's own accounting: the statistics CSV (``-trace_stat``: successful, failed, retransmitted)
and every response time it measured (``-trace_rtt -rtt_freq 1``: the scenario's
``start_rtd``/``rtd`` pair; SIPp's clock ticks in milliseconds, a few at a time).  A step
*holds* when under 1% of its calls failed, every call ended, and the completed calls per
second of wall-clock time reached 90% of the offered rate: a server that falls behind shows
up as failures, or as SIPp throttling new calls and running long.  Before each step the
server must answer OPTIONS promptly again, so one overloaded step does not spill its backlog
into the next.

A *sweep* raises the rate along a list until a step does not hold, then bisects between the
last rate that held and the first that did not.  User lists for SIPp are CSV injection files
(``-inf``) in the form SIPp's manual gives for per-call credentials.
"""

from __future__ import annotations

import csv
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.harness import ServerHarness, free_port  # noqa: E402

DOMAIN = "falcot.com"
BENCH_SIPP = Path(__file__).parent / "sipp"
E2E_SIPP = REPO / "tests" / "e2e" / "sipp"
MAX_FAILED = 0.01
MIN_ACHIEVED = 0.9


def bench_users(count: int) -> dict[str, str]:
    """user0000..: one distinct password each, the same on every server under test."""
    return {f"user{i:04d}": f"bench-{i:04d}-Secret" for i in range(count)}


def write_users_csv(path: Path, users: dict[str, str]) -> Path:
    """SIPp injection file: field0 the user, field1 its [authentication] keyword."""
    lines = ["SEQUENTIAL"]
    lines += [f"{user};[authentication username={user} password={password}];"
              for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Target:
    """A SIP server under test, listening on 127.0.0.1:port for UDP and TCP."""

    name: str
    port: int
    stop: Callable[[], object]


def start_unirtc(folder: Path, users: dict[str, str], log_level: str = "warn") -> Target:
    """``twistd -n unirtc`` through the e2e harness; users made with ``unirtc-ctl adduser``."""
    server = ServerHarness(folder)
    server.sections["server"]["log_level"] = log_level
    server.write_config()
    for user, password in users.items():
        server.adduser(f"{user}@{DOMAIN}", password)
    server.start(wait_for="sip")
    return Target("unirtc", server.ports["sip"], server.stop)


def start_kamailio(folder: Path, users: dict[str, str]) -> Target:
    from bench.kamailio_peer import Kamailio, version

    server = Kamailio(folder, free_port(), users, DOMAIN)
    server.start()
    return Target(f"kamailio {version()}", server.port, server.stop)


@dataclass
class Step:
    """What SIPp counted for one offered rate."""

    rate: float
    calls: int
    ok: int
    failed: int
    retransmissions: int
    elapsed: float
    rtts_ms: list[float] = field(default_factory=list)

    @property
    def failed_share(self) -> float:
        attempted = self.ok + self.failed
        return self.failed / attempted if attempted else 1.0

    @property
    def achieved(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    @property
    def holds(self) -> bool:
        return (self.failed_share < MAX_FAILED and self.ok + self.failed >= self.calls
                and self.achieved >= MIN_ACHIEVED * self.rate)

    def describe(self) -> str:
        verdict = "holds" if self.holds else "does not hold"
        return (f"{self.rate:g}/s offered: {self.ok} ok, {self.failed} failed ({self.failed_share:.1%}), "
                f"{self.retransmissions} retransmissions, {self.achieved:.1f}/s achieved over "
                f"{self.elapsed:.1f} s, {distribution(self.rtts_ms)} -> {verdict}")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(share * len(ordered) + 0.999999)))
    return ordered[rank - 1]


def distribution(rtts_ms: Sequence[float]) -> str:
    if not rtts_ms:
        return "no response times"
    marks = ", ".join(f"p{int(p * 100)} {percentile(rtts_ms, p):.0f}" for p in (0.5, 0.9, 0.99))
    return f"response time ms: {marks}, max {max(rtts_ms):.0f} (n={len(rtts_ms)})"


def _last_stats(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    return rows[-1] if rows else {}


def _rtts(folder: Path) -> list[float]:
    values = []
    for path in folder.glob("*_rtt.csv"):
        with path.open() as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                try:
                    values.append(float(row["response_time_ms"]))
                except (KeyError, TypeError, ValueError):
                    continue
    return values


def options_rtt(port: int, timeout: float = 1.0) -> float | None:
    """Seconds for one OPTIONS to the server itself over UDP, None if unanswered."""
    request = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
               "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-bench-{tag};rport\r\n"
               "From: <sip:bench@127.0.0.1>;tag=bench\r\nTo: <sip:127.0.0.1>\r\n"
               "Call-ID: bench-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n").replace("{tag}", secrets.token_hex(6)).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.bind(("127.0.0.1", 0))
        started = time.monotonic()
        try:
            sock.sendto(request, ("127.0.0.1", port))
            while not sock.recv(65535).startswith(b"SIP/2.0 200"):
                pass
        except OSError:
            return None
        return time.monotonic() - started


def settle(target: Target, limit: float = 60.0) -> None:
    """Wait until the server answers OPTIONS within 20 ms three times in a row (its backlog
    from an earlier step is gone), for at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    prompt = 0
    while prompt < 3 and time.monotonic() < deadline:
        rtt = options_rtt(target.port)
        prompt = prompt + 1 if rtt is not None and rtt < 0.02 else 0
        time.sleep(0.2)


def run_step(folder: Path, target: Target, scenario: Path, rate: float, seconds: float,
             transport: str, extra: Sequence[str]) -> Step:
    """One SIPp client run of ``scenario`` at ``rate`` calls/s for ``seconds``, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    settle(target)
    calls = max(1, round(rate * seconds))
    stats = folder / "stats.csv"
    argv = ["sipp", f"127.0.0.1:{target.port}", "-sf", str(scenario), "-t", transport,
            "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()), "-nostdin",
            "-key", "domain", DOMAIN, "-r", str(rate), "-m", str(calls), "-max_socket", "2000",
            "-recv_timeout", "5000", "-timeout", f"{int(seconds * 3 + 30)}s",
            "-trace_stat", "-stf", str(stats), "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
            "-trace_err", "-error_file", str(folder / "errors.log"), *extra]
    started = time.monotonic()
    subprocess.run(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=seconds * 3 + 90)
    elapsed = time.monotonic() - started
    row = _last_stats(stats)
    return Step(rate=rate, calls=calls, ok=int(row.get("SuccessfulCall(C)", 0) or 0),
                failed=int(row.get("FailedCall(C)", 0) or 0),
                retransmissions=int(row.get("Retransmissions(C)", 0) or 0),
                elapsed=elapsed, rtts_ms=_rtts(folder))


@dataclass
class Outcome:
    """A sweep's result: the best step that held, and whether any rate failed at all (if
    none did, the server's ceiling lies above the highest rate offered)."""

    best: Step | None
    ceiling_found: bool


def sweep(run: Callable[[float], Step], rates: Sequence[float], refine: int,
          report: Callable[[Step], None]) -> Outcome:
    """The step at the highest rate that held (None if even the first did not)."""
    best: Step | None = None
    failed_at: float | None = None
    for rate in rates:
        step = run(rate)
        report(step)
        if not step.holds:
            failed_at = rate
            break
        best = step
    for _ in range(refine if failed_at is not None else 0):
        low = best.rate if best is not None else 0.0
        rate = round((low + failed_at) / 2)
        if rate <= low or rate >= failed_at:
            break
        step = run(rate)
        report(step)
        if step.holds:
            best = step
        else:
            failed_at = rate
    return Outcome(best, failed_at is not None)


def _rate(outcome: Outcome) -> str:
    rate = outcome.best.rate if outcome.best else 0.0
    return f"{rate:g}/s" if outcome.ceiling_found else f">= {rate:g}/s (no offered rate failed)"


def result_line(measure: str, target: Target, transport: str, outcome: Outcome) -> str:
    best = outcome.best
    if best is None:
        return f"{measure} {target.name} ({transport}): no offered rate held (<1% failed)"
    return (f"{measure} {target.name} ({transport}): highest rate with <1% failures {_rate(outcome)} "
            f"({best.achieved:.1f}/s achieved, {best.failed} of {best.ok + best.failed} failed); "
            f"{distribution(best.rtts_ms)}")


def ratio_line(measure: str, results: dict[str, Outcome]) -> str:
    """unirtc's highest rate over Kamailio's, when both ran (an upper bound when Kamailio
    never failed: its own ceiling is higher)."""
    names = list(results)
    ours = next((n for n in names if n.startswith("unirtc")), None)
    theirs = next((n for n in names if n.startswith("kamailio")), None)
    if ours is None or theirs is None:
        return f"{measure} ratio: needs both servers"
    a, b = results[ours], results[theirs]
    rate_a, rate_b = (a.best.rate if a.best else 0.0), (b.best.rate if b.best else 0.0)
    ratio = f"{rate_a / rate_b:.3f}" if rate_b else "n/a"
    if rate_b and not b.ceiling_found:
        ratio = f"<= {ratio}"
    return f"{measure} ratio {ours}/{theirs}: {_rate(a)} / {_rate(b)} = {ratio}"


Measure = Callable[[Path, Target, Callable[[Step], None]], Outcome]
STARTERS: dict[str, Callable[[Path, dict[str, str]], Target]] = {
    "unirtc": start_unirtc, "kamailio": start_kamailio}


def compare(folder: Path, servers: Sequence[str], users: dict[str, str], transport: str,
            measures: dict[str, Measure]) -> list[str]:
    """Run every measure against each server in turn (never two servers at once); the lines
    to print: one result per measure and server, then one ratio per measure."""
    results: dict[str, dict[str, Outcome]] = {name: {} for name in measures}
    lines = []
    for server in servers:
        print(f"starting {server} with {len(users)} users ...", flush=True)
        target = STARTERS[server](folder / server, users)
        try:
            for name, measure in measures.items():
                def report(step: Step, name: str = name) -> None:
                    print(f"  {name} {target.name} ({transport}) step: {step.describe()}", flush=True)
                outcome = measure(folder / f"{server}-{name}", target, report)
                results[name][target.name] = outcome
                lines.append(result_line(name, target, transport, outcome))
        finally:
            target.stop()
    lines += [ratio_line(name, per_server) for name, per_server in results.items()]
    return lines

"""XMPP c2s load: logins per second, one-to-one messages per second with latency, and memory per
idle authenticated connection, for unirtc and Prosody 0.12 (Debian) in the same run.

Usage (from the repository root; 2-3 minutes with the defaults):
    .venv/bin/python bench/xmpp.py [--logins 1000] [--concurrency 40] [--pairs 50] [--window 2]
        [--seconds 10] [--clients 2] [--mechanism SCRAM-SHA-1|SCRAM-SHA-256]
        [--servers unirtc,unirtc-no-mam,prosody] [--unirtc SECTION.KEY=VALUE ...] [--profile FILE]

Each server in turn (never two at once) on a free loopback port, with the same self-signed
RSA-2048 certificate, the same accounts (user0000... with one password) and the same clients:

* unirtc: ``twistd -n unirtc`` through the e2e harness (SQLite, log level warn, c2s backlog
  1024 like the Prosody config), as shipped (every bundled plugin) and, as ``unirtc-no-mam``,
  without the message archive, which Prosody's baseline does not load either (the archive
  writes each message twice, once per side). The first account is created with ``unirtc-ctl
  adduser --password-stdin``, which also creates the database, the others with the same
  ``directory.store.create_account`` in this process (unirtc-ctl takes ~1.4 s a run);
* Prosody: ``bench/prosody_peer.py`` (the baseline configuration, run as user prosody).

The clients (``bench/xmpp_client.py``) are raw asyncio XMPP clients in ``--clients`` processes:
STARTTLS with the ssl module, SCRAM with hashlib/hmac (each account's SaltedPassword derived
before the clock starts, as a client caching it would), no XML parsing, only byte markers.
Their CPU is printed next to the server's, with what other processes on the machine used, so
one can see which side was saturated. Prosody 0.12 offers one SCRAM hash per host (SHA-1 with
the baseline config), so SCRAM-SHA-1 is the default for both; SCRAM-SHA-256 switches both.

1. logins/s: ``--logins`` logins, ``--concurrency`` at a time: connect, STARTTLS, SCRAM, bind,
   initial presence (done when the server reflects it). The connections are kept. Before
   them, a warm-up round logs 2 x concurrency accounts (``--warm``: all of them) in and out.
2. memory: VmRSS of the server process (/proc/PID/status) before those logins (after the
   warm-up) and ``--settle`` seconds after them, divided by their number.
3. messages/s: ``--pairs`` pairs of sessions, each sender keeping ``--window`` chat messages in
   flight to its receiver's bare JID (a new one as each arrives) for ``--seconds`` after one
   second of warm-up; latency is send to receipt, on the clients' monotonic clock.

``--profile FILE`` runs unirtc's twistd under cProfile (reactor-thread CPU time) for a separate
look at hot spots: ``python -c "import pstats; pstats.Stats('FILE').sort_stats('tottime').print_stats(30)"``.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.prosody_peer import Prosody, installed, version as prosody_version  # noqa: E402
from bench.xmpp_client import DOMAIN, HASHES, PASSWORD, Clients, Keys  # noqa: E402
from tests.e2e.harness import BIN, ServerHarness, free_port, wait_for_port  # noqa: E402
from unirtc.directory.secrets import salted_password, scram_keys  # noqa: E402

# twistd under cProfile timing the reactor thread's CPU (twistd --profile times the wall clock,
# which on a shared machine mostly measures waiting for a core); stats saved when it stops.
PROFILED_TWISTD = """
import cProfile, sys, time
from twisted.scripts.twistd import run
out = sys.argv.pop(1)
sys.argv[0] = "twistd"
profile = cProfile.Profile(time.thread_time)
profile.enable()
try:
    run()
finally:
    profile.disable()
    profile.dump_stats(out)
"""
WARMUP = 1.0  # seconds of messages before the measuring window


# -- measuring -------------------------------------------------------------------------------------

def vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores, all processes) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass
class Figures:
    """One server's result lines, and the numbers the ratio lines compare."""

    name: str
    lines: list[str] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float, text: str) -> None:
        self.values[key] = value
        self.lines.append(f"{self.name}: {text}")
        print(self.lines[-1], file=sys.stderr, flush=True)  # progress; main() prints the summary


def measure(figures: Figures, pid: int, clients: Clients, users: list[str], args: argparse.Namespace) -> None:
    """The three figures against the server whose process is ``pid``."""
    count = len(clients.pipes)
    warm = users[:args.logins] if args.warm else users[:2 * args.concurrency]  # caches, lazy imports
    clients.call("login", [{"users": warm[w::count], "concurrency": max(1, args.concurrency // count),
                            "start_at": 0.0} for w in range(count)])
    clients.call("close", [{}] * count)
    time.sleep(1.0)
    measure_logins(figures, pid, clients, users[:args.logins], args)
    clients.call("close", [{}] * count)
    time.sleep(1.0)
    pair_users = users[:2 * args.pairs]  # pair p (users 2p, 2p+1) goes to worker p % count
    assigned = [[u for p in range(w, args.pairs, count) for u in pair_users[2 * p:2 * p + 2]] for w in range(count)]
    clients.call("login", [{"users": names, "concurrency": 1, "start_at": 0.0} for names in assigned])
    time.sleep(0.5)
    measure_messages(figures, pid, clients, args)
    clients.call("close", [{}] * count)


def measure_logins(figures: Figures, pid: int, clients: Clients, users: list[str], args: argparse.Namespace) -> None:
    """logins/s, then memory per connection with the sessions held."""
    count = len(clients.pipes)
    rss_before = vmrss_kib(pid)
    start_at = time.monotonic() + 0.3
    clients.send("login", [{"users": users[w::count], "concurrency": max(1, args.concurrency // count),
                            "start_at": start_at} for w in range(count)])
    _sleep_until(start_at)
    cpu, busy = cpu_seconds(pid), busy_seconds()
    results = clients.collect()
    wall = time.monotonic() - start_at
    server_cpu, machine = (cpu_seconds(pid) - cpu) / wall, (busy_seconds() - busy) / wall
    failed = [e for r in results for e in r["errors"]]
    if failed:
        raise RuntimeError(f"{len(failed)} logins failed, first: {failed[0]}")
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    took = [t for r in results for t in r["took"]]
    client_cpu = sum(r["cpu"] for r in results)
    others = machine - server_cpu - client_cpu / elapsed
    derived = sum(r["derived"] for r in results)
    figures.add("logins", len(took) / elapsed,
                f"logins/s: {len(took) / elapsed:,.0f} ({len(took)} in {elapsed:.2f} s, {args.concurrency} at a "
                f"time; login p50 {_percentile(took, 0.5) * 1e3:.0f} ms, p99 {_percentile(took, 0.99) * 1e3:.0f} ms; "
                f"server CPU {server_cpu:.0%} = {server_cpu * wall / len(took) * 1e3:.1f} ms a login, "
                f"client CPU {client_cpu:.2f} s = {client_cpu / elapsed:.0%} of a core "
                f"in {count} processes, other processes {max(0.0, others):.0%}"
                f"{f'; {derived} SaltedPassword derived during the run' if derived else ''}; "
                f"{results[0]['tls']})")
    if args.warm:  # the warm-up already grew the heap for as many sessions; neither server gives it back
        figures.lines.append(f"{figures.name}: memory per idle authenticated connection: not measured with --warm")
        return
    time.sleep(args.settle)
    rss_after = vmrss_kib(pid)
    per_connection = (rss_after - rss_before) / len(took)
    figures.add("memory", per_connection,
                f"memory per idle authenticated connection: {per_connection:.1f} KiB (VmRSS {rss_before / 1024:.1f} "
                f"-> {rss_after / 1024:.1f} MiB over {len(took)} connections, {args.settle:g} s after the last login)")


def measure_messages(figures: Figures, pid: int, clients: Clients, args: argparse.Namespace) -> None:
    """messages/s and latency over the pairs the workers hold."""
    count = len(clients.pipes)
    start_at = time.monotonic() + 0.3
    clients.send("messages", [{"window": args.window, "start_at": start_at, "warmup": WARMUP,
                               "seconds": args.seconds}] * count)
    _sleep_until(start_at + WARMUP)
    cpu, busy = cpu_seconds(pid), busy_seconds()
    _sleep_until(start_at + WARMUP + args.seconds)
    server_cpu = (cpu_seconds(pid) - cpu) / args.seconds
    machine = (busy_seconds() - busy) / args.seconds
    results = clients.collect()
    latencies = [n / 1e6 for r in results for n in r["latencies"]]
    sent, received = sum(r["sent"] for r in results), sum(r["received"] for r in results)
    bounced = sum(r["bounced"] for r in results)
    client_cpu = sum(r["cpu"] for r in results)
    client_wall = statistics.mean(r["end"] - r["start"] for r in results)
    rate = len(latencies) / args.seconds
    others = machine - server_cpu - client_cpu / client_wall
    figures.values["p50"], figures.values["p99"] = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    lost = f"; {sent - received} not delivered, {bounced} bounced" if sent != received or bounced else ""
    figures.add("messages", rate,
                f"messages/s: {rate:,.0f} over {args.pairs} pairs ({args.window} in flight each; "
                f"p50 {figures.values['p50']:.1f} ms, p99 {figures.values['p99']:.1f} ms; {len(latencies)} in "
                f"{args.seconds:g} s after {WARMUP:g} s warm-up; server CPU {server_cpu:.0%} = "
                f"{server_cpu / max(rate, 1e-9) * 1e3:.2f} ms a message, client CPU "
                f"{client_cpu / client_wall:.0%} of a core, other processes {max(0.0, others):.0%}{lost})")


# -- the servers -----------------------------------------------------------------------------------

def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for the domain, as setup_prosody.sh makes it."""
    certificate, key = folder / "certificate.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
                    "-keyout", str(key), "-out", str(certificate), "-subj", f"/CN={DOMAIN}",
                    "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:conference.{DOMAIN}"],
                   check=True, capture_output=True)
    return certificate, key


def run_unirtc(folder: Path, certificate: Path, key: Path, users: list[str], args: argparse.Namespace,
               archive: bool = True) -> Figures:
    """unirtc as shipped (every bundled plugin), or without the message archive (``archive``
    False), which is the feature set of the Prosody baseline (no mod_mam there)."""
    from unirtc import __version__
    from unirtc.config import load_settings
    from unirtc.directory import store
    from unirtc.directory.engine import make_engine
    from unirtc.plugin import bundled_plugins

    harness = ServerHarness(folder / ("unirtc" if archive else "unirtc-no-mam"), config={
        "server": {"log_level": "warn"}, "tls": {"certificate": str(certificate), "key": str(key)}})
    harness.sections["xmpp"]["c2s"] = f"tcp:{harness.ports['c2s']}:interface=127.0.0.1:backlog=1024"
    if not archive:
        harness.sections["xmpp"]["plugins"] = " ".join(p for p in bundled_plugins() if p != "mam")
    for item in args.unirtc:
        name, _, value = item.partition("=")
        section, _, option = name.partition(".")
        harness.sections.setdefault(section, {})[option] = value
    harness.write_config()
    harness.adduser(f"{users[0]}@{DOMAIN}", PASSWORD)  # creates and migrates the database
    engine = make_engine(load_settings(harness.ini).server.database)
    hash_name = HASHES[args.mechanism]
    keys: Keys = {}
    try:
        with store.transaction(engine) as session:
            for user in users[1:]:
                store.create_account(session, user, DOMAIN, PASSWORD)
        with store.transaction(engine) as session:
            for user in users:
                secret = store.get_credentials(session, user, DOMAIN).scram[hash_name]
                keys[(secret.salt, secret.iterations)] = scram_keys(
                    hash_name, salted_password(hash_name, PASSWORD, secret.salt, secret.iterations))
    finally:
        engine.dispose()
    twistd = [str(BIN / "python"), "-c", PROFILED_TWISTD, args.profile] if args.profile else [str(BIN / "twistd")]
    harness.process = subprocess.Popen(
        [*twistd, "--nodaemon", "--pidfile=", "unirtc", "-c", str(harness.ini)],
        cwd=harness.directory, env=harness.env, stdout=open(harness.log_path, "ab"), stderr=subprocess.STDOUT)
    clients = None
    try:
        wait_for_port(harness.ports["c2s"], process=harness.process)
        clients = Clients(args.clients, harness.ports["c2s"], certificate, args.mechanism, keys)
        figures = Figures(f"unirtc {__version__}" + ("" if archive else " without mam"))
        measure(figures, harness.process.pid, clients, users, args)
        return figures
    except Exception:
        print(harness.log()[-3000:], file=sys.stderr)
        raise
    finally:
        if clients is not None:
            clients.stop()
        harness.stop()


def run_prosody(folder: Path, certificate: Path, key: Path, users: list[str], args: argparse.Namespace) -> Figures:
    prosody = Prosody(folder / "prosody", free_port(), DOMAIN, certificate, key, HASHES[args.mechanism])
    keys = prosody.add_users({user: PASSWORD for user in users})
    prosody.start()
    clients = None
    try:
        clients = Clients(args.clients, prosody.port, certificate, args.mechanism, keys)
        figures = Figures(f"Prosody {prosody_version()}")
        measure(figures, prosody.process.pid, clients, users, args)
        return figures
    except Exception:
        print(prosody.log()[-3000:], file=sys.stderr)
        raise
    finally:
        if clients is not None:
            clients.stop()
        prosody.stop()


def compare(ours: Figures, theirs: Figures) -> list[str]:
    """unirtc / Prosody for each figure, saying which way is better."""
    a, b = ours.values, theirs.values
    lines = [
        f"ratio {ours.name} / {theirs.name}: logins/s {a['logins'] / b['logins']:.2f} (higher is better)",
        f"ratio {ours.name} / {theirs.name}: messages/s {a['messages'] / b['messages']:.2f} (higher is better), "
        f"latency p50 {a['p50'] / b['p50']:.2f}, p99 {a['p99'] / b['p99']:.2f} (lower is better)",
    ]
    if "memory" in a and "memory" in b:
        lines.append(f"ratio {ours.name} / {theirs.name}: memory per connection {a['memory'] / b['memory']:.2f} "
                     "(lower is better)")
    return lines


RUNNERS = {
    "unirtc": run_unirtc,
    "unirtc-no-mam": lambda *a: run_unirtc(*a, archive=False),
    "prosody": run_prosody,
}


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--logins", type=int, default=1000, help="logins timed, then held for the memory figure")
    parser.add_argument("--concurrency", type=int, default=40, help="logins in progress at a time")
    parser.add_argument("--warm", action="store_true",
                        help="log every account in and out once before the timed logins (default: only "
                             "2 x concurrency of them, so most timed logins are each account's first "
                             "since the server started and unirtc reads its credentials, roster... from "
                             "the database); no memory figure then")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before reading VmRSS after the logins")
    parser.add_argument("--pairs", type=int, default=50, help="sender/receiver pairs for the message figure")
    parser.add_argument("--window", type=int, default=2, help="messages in flight per pair")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of messages")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--mechanism", choices=sorted(HASHES), default="SCRAM-SHA-1",
                        help="SCRAM-SHA-1 is what Prosody's baseline (internal_hashed) offers")
    parser.add_argument("--servers", default=",".join(RUNNERS),
                        help="any of unirtc (as shipped), unirtc-no-mam (no message archive, like the "
                             "Prosody baseline), prosody")
    parser.add_argument("--unirtc", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="extra unirtc configuration, e.g. xmpp.plugins=roster,presence")
    parser.add_argument("--profile", help="run unirtc's twistd under cProfile (reactor thread CPU time), "
                                          "stats saved to this file")
    args = parser.parse_args()
    servers = args.servers.split(",")
    if unknown := set(servers) - set(RUNNERS):
        parser.error(f"unknown server {', '.join(sorted(unknown))}")
    if "prosody" in servers and (why := installed()):
        sys.exit(why)
    users = [f"user{i:04d}" for i in range(max(args.logins, 2 * args.pairs, 2 * args.concurrency))]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-xmpp-") as tmp:
        folder = Path(tmp)
        certificate, key = make_certificate(folder)
        for server in servers:
            results.append(RUNNERS[server](folder, certificate, key, users, args))
    for figures in results:
        print("\n".join(figures.lines))
    if "prosody" in servers:
        reference = results[servers.index("prosody")]
        for figures in results:
            if figures is not reference:
                print("\n".join(compare(figures, reference)))


if __name__ == "__main__":
    main()

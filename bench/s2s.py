"""XMPP federation throughput: chat messages per second across one s2s link, with latency.

Usage (from the repository root; about 30 s with the defaults):
    .venv/bin/python bench/s2s.py [--pairs 20] [--window 4] [--seconds 10] [--dialback]

Two ``twistd -n unirtc`` servers on loopback (falcot.com and example.org, log level warn),
``[s2s] hosts`` pointing at each other. By default each trusts the other's test-CA certificate
through ``[tls] ca``, so the link authenticates with SASL EXTERNAL; ``--dialback`` leaves
``[tls] ca`` out, so it uses Server Dialback. ``--pairs`` senders on falcot.com each keep
``--window`` chat messages in flight to a receiver on example.org (the next one leaves as one
arrives); every message crosses the same falcot.com->example.org link. The clients are raw
asyncio clients (bench/xmpp.py's stream and SCRAM code) in this process.

Prints one line per measure: the first message's latency (it waits for the link to be made:
resolve, TCP, STARTTLS, authentication), messages per second with latency percentiles, and
the CPU seconds each server and this client process spent in the measuring window.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.xmpp import PASSWORD, STARTTLS, Keys, Stream, _cpu, authenticate, cpu_seconds  # noqa: E402
from tests.e2e.harness import ServerHarness  # noqa: E402
from tests.s2s_pki import TestCA, pem, write_pair  # noqa: E402

BODY = re.compile(rb"<body>(\d+) (\d+)</body>")
BIND = (b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>bench</resource></bind></iq>")


def header(domain: str) -> bytes:
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='{domain}' version='1.0' "
            "xmlns:stream='http://etherx.jabber.org/streams'>").encode()


async def login(port: int, context: ssl.SSLContext, user: str, domain: str, keys: Keys) -> Stream:
    """STARTTLS, SCRAM-SHA-1, bind, initial presence."""
    loop = asyncio.get_running_loop()
    transport, stream = await loop.create_connection(lambda: Stream(user), "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stream.write(header(domain))
    await stream.until(b"</stream:features>")
    stream.write(STARTTLS)
    await stream.until(b"<proceed")
    stream.transport = await loop.start_tls(transport, stream, context, server_hostname=domain)
    stream.buffer = b""
    stream.write(header(domain))
    await stream.until(b"</stream:features>")
    await authenticate(stream, "SCRAM-SHA-1", keys)
    stream.write(header(domain))
    await stream.until(b"</stream:features>")
    stream.write(BIND)
    await stream.until(b"</iq>")
    stream.write(b"<presence/>")
    await stream.until(b"<presence")
    return stream


def make_servers(folder: Path, dialback: bool, users: int) -> tuple[ServerHarness, ServerHarness, Path]:
    ca = TestCA()
    certs = folder / "certs"
    certs.mkdir(parents=True)
    ca_file = certs / "ca.pem"
    ca_file.write_bytes(pem(ca.certificate))
    servers = []
    for domain in ("falcot.com", "example.org"):
        key, leaf = ca.issue(dns=(domain, f"conference.{domain}"))
        crt_path, key_path = write_pair(certs, domain, key, [leaf])
        tls = {"certificate": str(crt_path), "key": str(key_path)}
        if not dialback:
            tls["ca"] = str(ca_file)
        servers.append(ServerHarness(folder / domain, domain, config={"server": {"log_level": "warn"}, "tls": tls}))
    falcot, example = servers
    falcot.sections["s2s"] = {"hosts": f"example.org=127.0.0.1:{example.ports['s2s']}"}
    example.sections["s2s"] = {"hosts": f"falcot.com=127.0.0.1:{falcot.ports['s2s']}"}
    for server, prefix in ((falcot, "sender"), (example, "receiver")):
        server.write_config()
        create_accounts(server, [f"{prefix}{i:03d}" for i in range(users)])
    return falcot, example, ca_file


def create_accounts(server: ServerHarness, users: list[str]) -> None:
    from unirtc.config import load_settings
    from unirtc.directory import store
    from unirtc.directory.engine import make_engine

    server.adduser(f"{users[0]}@{server.domain}", PASSWORD)  # creates and migrates the database
    engine = make_engine(load_settings(server.ini).server.database)
    try:
        with store.transaction(engine) as session:
            for user in users[1:]:
                store.create_account(session, user, server.domain, PASSWORD)
    finally:
        engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(falcot: ServerHarness, example: ServerHarness, ca_file: Path, args: argparse.Namespace) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    keys: Keys = {}
    senders = [await login(falcot.ports["c2s"], context, f"sender{i:03d}", "falcot.com", keys)
               for i in range(args.pairs)]
    receivers = [await login(example.ports["c2s"], context, f"receiver{i:03d}", "example.org", keys)
                 for i in range(args.pairs)]
    # The first message makes the link.
    started = time.monotonic()
    senders[0].write(b"<message to='receiver000@example.org' type='chat'><body>0 0</body></message>")
    await receivers[0].until(b"</body>")
    print(f"s2s first message, link setup included ({'dialback' if args.dialback else 'SASL EXTERNAL'}): "
          f"{(time.monotonic() - started) * 1000:.0f} ms")

    latencies: list[float] = []
    counts = {"sent": 0, "received": 0}
    deadline = {"at": 0.0}

    def pair(sender: Stream, receiver: Stream, to: str) -> None:
        prefix = f"<message to='{to}@example.org' type='chat'><body>".encode()
        state = {"seq": 0, "tail": b""}

        def send() -> None:
            state["seq"] += 1
            counts["sent"] += 1
            sender.transport.write(b"%s%d %d</body></message>" % (prefix, state["seq"], time.monotonic_ns()))

        def sink(data: bytes | None) -> None:
            if data is None:
                send()
                return
            data = state["tail"] + data
            end = data.rfind(b"</body>")
            if end < 0:
                state["tail"] = data[-65536:]
                return
            end += len(b"</body>")
            now = time.monotonic_ns()
            for match in BODY.finditer(data, 0, end):
                counts["received"] += 1
                latencies.append((now - int(match.group(2))) / 1e6)
                if time.monotonic() < deadline["at"]:
                    send()
            state["tail"] = data[end:]

        receiver.sink = sink
        sender.sink = lambda data: None

    for i, (sender, receiver) in enumerate(zip(senders, receivers)):
        pair(sender, receiver, f"receiver{i:03d}")
    cpu = {name: cpu_seconds(server.process.pid) for name, server in (("falcot", falcot), ("example", example))}
    client_cpu = _cpu()
    started = time.monotonic()
    deadline["at"] = started + args.seconds
    for receiver in receivers:
        for _ in range(args.window):
            receiver.sink(None)
    await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - started
    grace = time.monotonic() + 5
    while counts["received"] < counts["sent"] and time.monotonic() < grace:
        await asyncio.sleep(0.05)
    used = {name: cpu_seconds(server.process.pid) - cpu[name]
            for name, server in (("falcot", falcot), ("example", example))}
    print(f"s2s chat messages over one link ({args.pairs} pairs, window {args.window}): "
          f"{counts['received'] / elapsed:,.0f}/s ({counts['received']} in {elapsed:.1f} s, "
          f"{counts['sent'] - counts['received']} lost); latency ms p50 {statistics.median(latencies):.1f} "
          f"p90 {percentile(latencies, 0.9):.1f} p99 {percentile(latencies, 0.99):.1f} max {max(latencies):.1f}")
    print(f"CPU seconds in the window: falcot.com {used['falcot']:.1f}, example.org {used['example']:.1f}, "
          f"clients {_cpu() - client_cpu:.1f}")
    for stream in senders + receivers:
        stream.sink = lambda data: None
        stream.write(b"</stream:stream>")
    await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dialback", action="store_true", help="leave [tls] ca out: the link uses dialback")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unirtc-bench-s2s-") as tmp:
        falcot, example, ca_file = make_servers(Path(tmp), args.dialback, args.pairs)
        try:
            falcot.start(wait_for="c2s")
            example.start(wait_for="c2s")
            asyncio.run(measure(falcot, example, ca_file, args))
        except Exception:
            for server in (falcot, example):
                print(server.log()[-3000:], file=sys.stderr)
            raise
        finally:
            for server in (falcot, example):
                server.stop()


if __name__ == "__main__":
    main()

"""TURN issuer and STUN responder throughput.

Usage: .venv/bin/python bench/turn.py [--seconds S] [--clients N]
Prints one line per measure:
- STUN ``respond()`` alone (the sans-I/O core, in this process);
- STUN Binding requests answered over real UDP loopback by a ``StunResponder`` on a real reactor
  (in a child process; this process keeps a window of requests in flight);
- ``GET /turn`` over HTTPS (keep-alive connections, N client threads) against the real server
  (twistd, SQLite, PBKDF2 password check per request).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import ServerHarness, free_port  # noqa: E402
from unirtc.turn.responder import respond  # noqa: E402
from unirtc.turn.stun import Class, Message, Method  # noqa: E402


def report(name: str, count: int, seconds: float) -> None:
    print(f"{name}: {count / seconds:,.0f}/s ({count} in {seconds:.2f} s)")


def binding_request() -> bytes:
    message = Message(Method.BINDING, Class.REQUEST)
    message.add_fingerprint()
    return bytes(message)


def bench_core(seconds: float) -> None:
    data, count, started = binding_request(), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            respond(data, ("192.0.2.1", 40000))
        count += 1000
    report("STUN respond() core, Binding request with FINGERPRINT", count, time.perf_counter() - started)


def serve_stun(port: int) -> None:
    from twisted.internet import reactor

    from unirtc.turn.responder import StunResponder

    reactor.listenUDP(port, StunResponder(), interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()


def bench_udp(seconds: float, window: int = 64) -> None:
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve-stun", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.connect(("127.0.0.1", port))
            request, answered, lost = binding_request(), 0, 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                for _ in range(window):
                    sock.send(request)
                for received in range(window):
                    try:
                        sock.recv(2048)
                    except TimeoutError:
                        lost += window - received
                        break
                    answered += 1
            elapsed = time.perf_counter() - started
        report(f"STUN Binding over UDP loopback, window {window} ({lost} lost)", answered, elapsed)
    finally:
        child.terminate()
        child.wait()


def bench_rest(seconds: float, clients: int) -> None:
    harness = ServerHarness(Path(tempfile.mkdtemp()) / "server",
                            config={"turn": {"secret": "bench-secret"}, "server": {"log_level": "warn"}})
    harness.adduser("joe@falcot.com", "bench-Passw0rd")
    harness.start()
    counts = [0] * clients
    errors: list[str] = []
    auth = {"Authorization": "Basic " + base64.b64encode(b"joe:bench-Passw0rd").decode()}
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        context = ssl.create_default_context(cafile=str(harness.directory / "var" / "certificate.pem"))
        context.check_hostname = False
        connection = http.client.HTTPSConnection("127.0.0.1", harness.ports["web"], context=context, timeout=10)
        while time.perf_counter() < deadline:
            connection.request("GET", "/turn", headers=auth)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(str(response.status))
            counts[index] += 1
        connection.close()

    try:
        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        harness.stop()
    report(f"GET /turn over HTTPS, {clients} keep-alive clients ({len(errors)} non-200)", sum(counts), elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4, help="HTTPS client threads (the server allows 8 "
                        "password checks in flight per address)")
    parser.add_argument("--serve-stun", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stun:
        serve_stun(args.serve_stun)
        return
    os.environ.setdefault("PYTHONPATH", str(REPO))
    bench_core(args.seconds)
    bench_udp(args.seconds)
    bench_rest(args.seconds, args.clients)


if __name__ == "__main__":
    main()

"""Browser-style SIP registrations over WSS (RFC 7118): how many held, how fast refreshed, and
the server memory each one costs.

Usage (from the repository root):
    .venv/bin/python bench/wss_registrations.py [--connections 1000] [--concurrency 50]
        [--idle 10] [--refresh-seconds 10] [--log-level warn]

``twistd -n unirtc`` is started by the e2e harness on free loopback ports (SQLite directory,
self-signed certificate, TLS on the web listener); the accounts (one per connection) are
created in-process with the directory's own ``create_account`` before the server starts.  A
client written here with ``wsproto`` over asyncio TLS then acts like JsSIP: one WebSocket per
account to ``/sip-websocket`` (subprotocol ``sip``, an allowed Origin), REGISTER with a
``.invalid`` Contact, ``+sip.instance`` and ``reg-id``, the 401, REGISTER with MD5 digest, 200.

Printed, one line per measure:

* ``register``: all connections opened and registered (``--concurrency`` at a time), in
  registrations per second, the server's CPU time per connection (from /proc: a figure that
  holds when other programs share the machine, unlike the rates), and the connect and
  REGISTER-to-200 times (median, p95, p99);
* ``held``: after ``--idle`` seconds without traffic, how many connections are still open and
  how many bindings the server lists (``unirtc-ctl sip-bindings`` counts them from the database);
* ``memory``: the twistd process's resident memory (VmRSS in /proc) before the first connection
  and with every registration held, and the difference per WSS registration;
* ``refresh``: each connection re-REGISTERs in a closed loop for ``--refresh-seconds`` (the
  nonce is reused with the next nonce-count, a stale or spent one answered by a new 401
  round), in refreshes per second, with the server's CPU time per REGISTER and its response times.
  The client runs in this one Python process: with many connections it can be the bottleneck,
  which the server's share of a core shows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import AcceptConnection, CloseConnection, RejectConnection, Request, TextMessage  # noqa: E402

from tests.e2e.harness import ServerHarness  # noqa: E402
from unirtc.config import load_settings  # noqa: E402
from unirtc.directory import migrate, store  # noqa: E402
from unirtc.directory.engine import make_engine  # noqa: E402
from unirtc.sip.digest import compute_response, parse_credentials  # noqa: E402
from unirtc.sip.message import SipResponse, parse  # noqa: E402

DOMAIN = "falcot.com"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def distribution(seconds: Sequence[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return f"median {percentile(ms, 0.5):.1f} ms, p95 {percentile(ms, 0.95):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Phone:
    """One browser-like SIP client on its own WSS connection."""

    def __init__(self, index: int, port: int, context: ssl.SSLContext) -> None:
        self.user = f"ws{index:05d}"
        self.password = f"bench-{index:05d}-Secret"
        self.port = port
        self.context = context
        self.token = secrets.token_hex(6)
        self.instance = f"<urn:uuid:{secrets.token_hex(4)}-0000-4000-8000-{index:012d}>"
        self.call_id = f"{secrets.token_hex(8)}-{index}"
        self.cseq = 0
        self.challenge: dict[str, str] | None = None
        self.nc = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.inbox: list[str] = []
        self.closed = False
        self._text: list[str] = []

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.context, server_hostname=DOMAIN)
        self.writer.write(self.ws.send(Request(
            host=f"{DOMAIN}:{self.port}", target="/sip-websocket", subprotocols=["sip"],
            extra_headers=[(b"origin", f"https://{DOMAIN}:{self.port}".encode())])))
        while True:
            for event in await self._events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise RuntimeError(f"upgrade refused: {event.status_code}")

    async def _events(self) -> list[object]:
        assert self.reader is not None
        data = await self.reader.read(65536)
        if not data:
            self.closed = True
            raise ConnectionError("closed by the server")
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def _response(self) -> SipResponse:
        while not self.inbox:
            for event in await self._events():
                if isinstance(event, TextMessage):
                    self._text.append(event.data)
                    if event.message_finished:
                        self.inbox.append("".join(self._text))
                        self._text = []
                elif isinstance(event, CloseConnection):
                    self.closed = True
                    raise ConnectionError(f"closed by the server: {event.code}")
        message = parse(self.inbox.pop(0).encode())
        assert isinstance(message, SipResponse)
        return message

    def _register(self) -> str:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/WSS {self.token}.invalid;branch=z9hG4bK{secrets.token_hex(8)}",
            "Max-Forwards: 69",
            f"To: <sip:{self.user}@{DOMAIN}>",
            f"From: <sip:{self.user}@{DOMAIN}>;tag={self.token}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{self.token}@{self.token}.invalid;transport=ws>;+sip.ice;reg-id=1;"
            f"+sip.instance=\"{self.instance}\";expires=600",
            "Expires: 600",
            "Supported: path,gruu,outbound",
            "User-Agent: unirtc bench (JsSIP-like)",
        ]
        if self.challenge is not None:
            self.nc += 1
            nc, cnonce = f"{self.nc:08x}", secrets.token_hex(8)
            realm, nonce = self.challenge["realm"], self.challenge["nonce"]
            ha1 = hashlib.md5(f"{self.user}:{realm}:{self.password}".encode()).hexdigest()
            response = compute_response("MD5", ha1, nonce, "REGISTER", f"sip:{DOMAIN}", qop="auth", nc=nc,
                                        cnonce=cnonce)
            lines.append(f'Authorization: Digest algorithm=MD5, username="{self.user}", realm="{realm}", '
                         f'nonce="{nonce}", uri="sip:{DOMAIN}", response="{response}", qop=auth, '
                         f'cnonce="{cnonce}", nc={nc}')
        lines.append("Content-Length: 0")
        return "\r\n".join(lines) + "\r\n\r\n"

    async def register(self) -> None:
        """REGISTER until 200: with the stored challenge if any, answering each 401 once."""
        assert self.writer is not None
        for _ in range(3):
            self.writer.write(self.ws.send(TextMessage(self._register())))
            response = await self._response()
            if response.status == 200:
                return
            if response.status != 401:
                raise RuntimeError(f"{self.user}: REGISTER answered {response.status} {response.reason}")
            self.challenge = parse_credentials(response.headers.get_all("WWW-Authenticate")[0]).params
            self.nc = 0
        raise RuntimeError(f"{self.user}: REGISTER kept being challenged")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def register_all(phones: list[Phone], concurrency: int) -> tuple[float, list[float], list[float]]:
    gate = asyncio.Semaphore(concurrency)
    connects: list[float] = []
    registers: list[float] = []

    async def one(phone: Phone) -> None:
        async with gate:
            start = time.perf_counter()
            await phone.connect()
            middle = time.perf_counter()
            await phone.register()
            connects.append(middle - start)
            registers.append(time.perf_counter() - middle)

    start = time.perf_counter()
    await asyncio.gather(*(one(phone) for phone in phones))
    return time.perf_counter() - start, connects, registers


async def refresh_loop(phones: list[Phone], seconds: float) -> tuple[int, float, list[float]]:
    deadline = time.perf_counter() + seconds
    times: list[float] = []

    async def loop(phone: Phone) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            await phone.register()
            times.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(loop(phone) for phone in phones))
    return len(times), time.perf_counter() - start, times


def create_accounts(server: ServerHarness, phones: list[Phone]) -> float:
    settings = load_settings(server.ini)
    engine = make_engine(settings.server.database)
    migrate.upgrade(engine)
    start = time.perf_counter()
    with store.transaction(engine) as session:
        for phone in phones:
            store.create_account(session, phone.user, DOMAIN, phone.password)
    engine.dispose()
    return time.perf_counter() - start


async def run(args: argparse.Namespace, folder: Path) -> list[str]:
    server = ServerHarness(folder / "server")
    server.sections["server"]["log_level"] = args.log_level
    server.write_config()
    phones = [Phone(i, server.ports["web"], ssl.create_default_context()) for i in range(args.connections)]
    made = create_accounts(server, phones)
    print(f"created {len(phones)} accounts in {made:.1f} s", flush=True)
    server.start(wait_for="web")
    lines = []
    try:
        context = ssl.create_default_context(cafile=str(server.directory / "var" / "certificate.pem"))
        context.check_hostname = False
        for phone in phones:
            phone.context = context
        await asyncio.sleep(2.0)  # startup settles (plugins, binding load)
        assert server.process is not None
        pid = server.process.pid
        before = rss_kib(pid)
        cpu = cpu_seconds(pid)
        elapsed, connects, registers = await register_all(phones, args.concurrency)
        cpu = cpu_seconds(pid) - cpu
        lines.append(f"register: {len(phones)} WSS connections registered in {elapsed:.2f} s = "
                     f"{len(phones) / elapsed:.0f}/s at concurrency {args.concurrency}; server CPU "
                     f"{cpu * 1000 / len(phones):.1f} ms per connection (TLS handshake, upgrade, 2 REGISTERs); "
                     f"TLS+upgrade {distribution(connects)}; REGISTER to 200 (2 round trips) {distribution(registers)}")
        print(lines[-1], flush=True)
        await asyncio.sleep(args.idle)
        after = rss_kib(pid)
        open_count = sum(1 for phone in phones if not phone.closed and not phone.reader.at_eof())
        listed = server.ctl("sip-bindings")
        bindings = len([line for line in listed.stdout.splitlines() if ".invalid;transport=ws" in line])
        lines.append(f"held: {open_count}/{len(phones)} connections open after {args.idle:g} s idle; "
                     f"{bindings} bindings stored")
        print(lines[-1], flush=True)
        lines.append(f"memory: twistd VmRSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
                     f"{len(phones)} WSS registrations held = {(after - before) / len(phones):.1f} KiB "
                     "per registration")
        print(lines[-1], flush=True)
        cpu = cpu_seconds(pid)
        count, spent, times = await refresh_loop(phones, args.refresh_seconds)
        cpu = cpu_seconds(pid) - cpu
        lines.append(f"refresh: {count} re-REGISTERs over {len(phones)} connections in {spent:.2f} s = "
                     f"{count / spent:.0f}/s; server CPU {cpu * 1000 / max(1, count):.2f} ms per REGISTER "
                     f"({cpu / spent:.0%} of one core); REGISTER to 200 {distribution(times)}")
        print(lines[-1], flush=True)
    finally:
        for phone in phones:
            phone.close()
        server.stop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--refresh-seconds", type=float, default=10.0)
    parser.add_argument("--log-level", default="warn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="unirtc-bench-wss-") as tmp:
        lines = asyncio.run(run(args, Path(tmp)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

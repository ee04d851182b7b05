"""MUC load: one room with N occupants (default 50): join time and groupchat delivery rate.

Usage: .venv/bin/python bench/muc.py [--occupants N] [--messages M] [--prosody]
Prints one line per measure:
- ``MucService.handle()`` alone (the sans-I/O core, in this process): N joins, then groupchat
  messages each reflected to the N occupants;
- against the real server (twistd, SQLite) and, with ``--prosody``, against Prosody on the same
  machine with the same clients: the time for N occupants to enter one after another (each
  waits for its self-presence), and groupchat messages per second delivered to all N (one
  occupant sends M messages back to back; the clock stops when every occupant has all M).

The clients are minimal asyncio XMPP clients (STARTTLS, SASL PLAIN, bind) that count stanzas
by marker instead of parsing them, so the client side costs little next to the server. Our
server's per-occupant message rate limit is raised for the run; Prosody has none by default.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.harness import ServerHarness, free_port, wait_for_port  # noqa: E402
from unirtc.config import load_settings  # noqa: E402
from unirtc.directory import store  # noqa: E402
from unirtc.directory.engine import make_engine  # noqa: E402

DOMAIN = "falcot.com"
ROOM = "bench@conference.falcot.com"
PASSWORD = "bench-Passw0rd"
SELF_PRESENCE = re.compile(rb"""code=['"]110['"]""")
RESULT = re.compile(rb"""id=['"]cfg['"]""")
BODY = b"<body>bench-"
TIMEOUT = 120.0


def report(name: str, count: int, seconds: float, unit: str = "/s") -> None:
    print(f"{name}: {count / seconds:,.0f}{unit} ({count} in {seconds:.2f} s)")


# -- the sans-I/O core ---------------------------------------------------------------------------

def bench_core(occupants: int, messages: int) -> None:
    from tests.unit.muc_helpers import xml
    from unirtc.muc.model import MucOptions
    from unirtc.muc.service import MucService

    service = MucService("conference.falcot.com", MucOptions(message_rate=1e9, message_burst=10**9,
                                                             max_users=occupants + 1))
    now = time.time()
    joins = [xml(f"<presence from='user{i}@{DOMAIN}/b' to='{ROOM}/user{i}'>"
                 "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>")
             for i in range(occupants)]
    started = time.perf_counter()
    for n, join in enumerate(joins):
        service.handle(join, now)
        if n == 0:
            service.handle(xml(f"<iq type='set' id='cfg' from='user0@{DOMAIN}/b' to='{ROOM}'>"
                               "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                               "<x xmlns='jabber:x:data' type='submit'/></query></iq>"), now)
    report(f"core: {occupants} joins", occupants, time.perf_counter() - started)
    message = xml(f"<message type='groupchat' from='user1@{DOMAIN}/b' to='{ROOM}'><body>bench-x</body></message>")
    started = time.perf_counter()
    delivered = sum(len(service.handle(message, now)) for _ in range(messages))
    elapsed = time.perf_counter() - started
    report(f"core: groupchat messages reflected to {occupants}", messages, elapsed)
    report("core: stanzas produced", delivered, elapsed)


# -- a minimal client ------------------------------------------------------------------------------

class Client:
    """Logs in, then counts self-presences, IQ results and bench message bodies as they stream in."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.selves = self.results = self.bodies = 0
        self._tail = b""
        self._changed = asyncio.Event()

    async def login(self, port: int, context: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._buffer = b""
        await self._open()
        self.writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self._until(b"<proceed")
        await self.writer.start_tls(context, server_hostname=DOMAIN)
        await self._open()
        plain = base64.b64encode(f"\0{self.user}\0{PASSWORD}".encode()).decode()
        self.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
        if b"<success" not in await self._until(b"<success", b"<failure"):
            raise RuntimeError(f"{self.user} could not log in")
        await self._open()
        self.writer.write(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          b"<resource>bench</resource></bind></iq>")
        await self._until(b"</iq>", b"/>")
        self._pump_task = asyncio.create_task(self._pump())

    async def _open(self) -> None:
        self.writer.write(f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='{DOMAIN}' "
                          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>".encode())
        await self._until(b"</stream:features>")

    async def _until(self, *markers: bytes) -> bytes:
        while not any(m in self._buffer for m in markers):
            chunk = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not chunk:
                raise RuntimeError(f"{self.user}: the server closed the stream: {self._buffer[-300:]!r}")
            self._buffer += chunk
        seen, self._buffer = self._buffer, b""
        return seen

    async def _pump(self) -> None:
        while chunk := await self.reader.read(262144):
            data = self._tail + chunk
            for attribute, pattern in (("selves", SELF_PRESENCE), ("results", RESULT)):
                found = len(pattern.findall(data)) - len(pattern.findall(self._tail))
                setattr(self, attribute, getattr(self, attribute) + found)
            self.bodies += data.count(BODY) - self._tail.count(BODY)
            self._tail = data[-32:]
            self._changed.set()

    async def wait(self, attribute: str, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while getattr(self, attribute) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - time.monotonic()))

    def send(self, data: str) -> None:
        self.writer.write(data.encode())


async def bench_server(name: str, port: int, certificate: Path, occupants: int, messages: int) -> None:
    context = ssl.create_default_context(cafile=str(certificate))
    context.check_hostname = False
    clients = [Client(f"user{i}") for i in range(occupants)]
    await asyncio.gather(*(c.login(port, context) for c in clients))
    started = time.perf_counter()
    for n, client in enumerate(clients):
        client.send(f"<presence to='{ROOM}/{client.user}'><x xmlns='http://jabber.org/protocol/muc'>"
                    "<history maxstanzas='0'/></x></presence>")
        await client.wait("selves", 1)
        if n == 0:  # accept the default configuration of the new room (an instant room)
            client.send(f"<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
                        "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
            await client.wait("results", 1)
    report(f"{name}: {occupants} occupants enter one after another", occupants, time.perf_counter() - started,
           " joins/s")
    sender = clients[1 % occupants]
    started = time.perf_counter()
    for i in range(messages):
        sender.send(f"<message type='groupchat' to='{ROOM}'><body>bench-{i}</body></message>")
        if i % 50 == 49:
            await sender.writer.drain()
    await asyncio.gather(*(c.wait("bodies", messages) for c in clients))
    elapsed = time.perf_counter() - started
    report(f"{name}: groupchat messages delivered to all {occupants}", messages, elapsed)
    report(f"{name}: stanzas delivered", messages * occupants, elapsed)
    for client in clients:
        client.writer.write(b"</stream:stream>")
        client.writer.close()


# -- the servers -----------------------------------------------------------------------------------

def run_unirtc(folder: Path, occupants: int, messages: int) -> Path:
    harness = ServerHarness(folder / "unirtc", config={
        "server": {"log_level": "warn"},
        "muc": {"message_rate": "100000000", "message_burst": "100000000", "max_occupants": str(occupants + 10)},
    })
    harness.adduser(f"user0@{DOMAIN}", PASSWORD)  # creates and migrates the database
    engine = make_engine(load_settings(harness.ini).server.database)
    with store.transaction(engine) as session:
        for i in range(1, occupants):
            store.create_account(session, f"user{i}", DOMAIN, PASSWORD)
    engine.dispose()
    harness.start(wait_for="c2s")
    try:
        asyncio.run(bench_server("unirtc", harness.ports["c2s"], harness.directory / "var" / "certificate.pem",
                                 occupants, messages))
    finally:
        harness.stop()
    return harness.directory / "var"


PROSODY_CONFIG = """
run_as_root = true
pidfile = "{folder}/prosody.pid"
data_path = "{folder}/data"
log = {{ warn = "{folder}/prosody.log" }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }}
modules_disabled = {{ "s2s" }}
c2s_ports = {{ {c2s} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ {s2s} }}
s2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{ }}
authentication = "internal_plain"
storage = "internal"
c2s_require_encryption = true
ssl = {{ certificate = "{certificate}"; key = "{key}" }}
VirtualHost "{domain}"
Component "conference.{domain}" "muc"
    max_history_messages = 20
"""


def run_prosody(folder: Path, keys: Path, occupants: int, messages: int) -> None:
    folder.mkdir(parents=True)
    accounts = folder / "data" / DOMAIN.replace(".", "%2e") / "accounts"
    accounts.mkdir(parents=True)
    for i in range(occupants):
        (accounts / f"user{i}.dat").write_text(f'return {{\n\t["password"] = "{PASSWORD}";\n}};\n')
    c2s = free_port()
    (folder / "prosody.cfg.lua").write_text(PROSODY_CONFIG.format(
        folder=folder, c2s=c2s, s2s=free_port(), certificate=keys / "certificate.pem", key=keys / "key.pem",
        domain=DOMAIN))
    about = subprocess.run(["prosodyctl", "--config", str(folder / "prosody.cfg.lua"), "about"],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60).stdout
    version = next((line for line in about.splitlines() if line.startswith("Prosody ")), "Prosody")
    process = subprocess.Popen(["prosody", "-F", "--config", str(folder / "prosody.cfg.lua")],
                               stdin=subprocess.DEVNULL, stdout=open(folder / "stdout.log", "wb"),
                               stderr=subprocess.STDOUT)
    try:
        wait_for_port(c2s, process=process)
        asyncio.run(bench_server(version, c2s, keys / "certificate.pem", occupants, messages))
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--occupants", type=int, default=50)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--prosody", action="store_true", help="also run the same clients against Prosody")
    args = parser.parse_args()
    bench_core(args.occupants, args.messages * 4)
    folder = Path(tempfile.mkdtemp(prefix="bench-muc-"))
    keys = run_unirtc(folder, args.occupants, args.messages)
    if args.prosody:
        run_prosody(folder / "prosody", keys, args.occupants, args.messages)


if __name__ == "__main__":
    main()

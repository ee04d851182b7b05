"""Federation end to end: two real unirtc servers, and unirtc with a real Prosody, on loopback.

falcot.com and example.org are two ``twistd -n unirtc`` processes whose ``[s2s] hosts`` point
at each other's s2s port. First each trusts the other's certificate through ``[tls] ca`` (one
certificate from a test CA, the other self-signed and pinned), so both links authenticate with
SASL EXTERNAL; then, restarted without ``[tls] ca``, the same servers fall back to Server
Dialback. slixmpp users on each side exchange messages both ways.

Prosody (Debian's package) serves example.net with its own certificate. unirtc reaches it by a
static route; Prosody has no static routes, so it finds falcot.com through DNS: the test runs a
twisted.names server on a loopback port with ``_xmpp-server._tcp.falcot.com`` pointing at our
s2s port, and Prosody's libunbound resolver forwards to it (``unbound = { forward = ... }``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import slixmpp

from tests.e2e.harness import BIN, ServerHarness, free_port, wait_for_port
from tests.e2e.xmpp_clients import chat, events, log_in, offline, run, trusting_client
from tests.s2s_pki import TestCA, pem, self_signed, write_pair

TIMEOUT = 15.0
PASSWORD = "Fed-Passw0rd"


async def online(jid: str, port: int, cafile: Path) -> slixmpp.ClientXMPP:
    """A slixmpp user logged in over STARTTLS (certificate verified against ``cafile``), available."""
    return await log_in(trusting_client(jid, PASSWORD, cafile, ("xep_0045",), sasl_mech=None), port,
                        timeout=TIMEOUT)


async def subscribe(joe: slixmpp.ClientXMPP, alice: slixmpp.ClientXMPP) -> None:
    """joe asks alice (on the other server) for her presence; her client approves; joe gets
    'subscribed' and then her available presence, across both links."""
    subscribed, available = events(joe, "presence_subscribed"), events(joe, "presence_available")
    joe.send_presence_subscription(pto="alice@example.org")
    answer = await asyncio.wait_for(subscribed.get(), TIMEOUT)
    assert answer["from"].bare == "alice@example.org"
    while True:
        presence = await asyncio.wait_for(available.get(), TIMEOUT)
        if presence["from"].bare == "alice@example.org":
            break


async def remote_occupant(joe: slixmpp.ClientXMPP, alice: slixmpp.ClientXMPP) -> None:
    """alice@example.org joins a room on conference.falcot.com and chats with joe there."""
    room = slixmpp.JID("lobby@conference.falcot.com")
    muc_joe, muc_alice = joe.plugin["xep_0045"], alice.plugin["xep_0045"]
    await muc_joe.join_muc_wait(room, "joe", timeout=TIMEOUT)
    form = await muc_joe.get_room_config(room, timeout=TIMEOUT)
    await muc_joe.set_room_config(room, form, timeout=TIMEOUT)  # accept the defaults: an instant room
    joe_room, alice_room = events(joe, "groupchat_message"), events(alice, "groupchat_message")
    presence, *_ = await muc_alice.join_muc_wait(room, "alice", timeout=TIMEOUT)
    assert presence["from"] == slixmpp.JID("lobby@conference.falcot.com/alice")
    alice.send_message(mto=room, mbody="Hello room, from example.org", mtype="groupchat")
    for queue in (joe_room, alice_room):
        while True:
            message = await asyncio.wait_for(queue.get(), TIMEOUT)
            if message["body"] == "Hello room, from example.org":
                assert message["from"] == slixmpp.JID("lobby@conference.falcot.com/alice")
                break


# -- two unirtc servers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory, request):
    """falcot.com (test-CA certificate) and example.org (self-signed), users created, not started."""
    base = tmp_path_factory.mktemp("s2s")
    ca = TestCA()
    certs = base / "certs"
    ca_file = certs / "ca.pem"
    certs.mkdir()
    ca_file.write_bytes(pem(ca.certificate))
    key, leaf = ca.issue(dns=("falcot.com", "conference.falcot.com"))
    falcot_crt, falcot_key = write_pair(certs, "falcot.com", key, [leaf])
    key, example_cert = self_signed("example.org")
    example_crt, example_key = write_pair(certs, "example.org", key, [example_cert])
    falcot = ServerHarness(base / "falcot", "falcot.com")
    example = ServerHarness(base / "example", "example.org")
    closed = free_port()
    falcot.sections["s2s"] = {"hosts": f"example.org=127.0.0.1:{example.ports['s2s']} "
                                       f"unreachable.example=127.0.0.1:{closed}"}
    example.sections["s2s"] = {"hosts": f"falcot.com=127.0.0.1:{falcot.ports['s2s']} "
                                        f"conference.falcot.com=127.0.0.1:{falcot.ports['s2s']}"}
    falcot.sections["tls"] = {"certificate": str(falcot_crt), "key": str(falcot_key), "ca": str(example_crt)}
    example.sections["tls"] = {"certificate": str(example_crt), "key": str(example_key), "ca": str(ca_file)}
    for server in (falcot, example):
        server.write_config()
    falcot.adduser("joe@falcot.com", PASSWORD)
    example.adduser("alice@example.org", PASSWORD)
    servers = {"falcot": falcot, "example": example, "ca": ca_file, "falcot_key": falcot_key,
               "falcot_crt": falcot_crt, "example_crt": example_crt}
    yield servers
    for server in (falcot, example):
        server.stop()
        if request.session.testsfailed:
            print(f"--- {server.domain} log ---\n{server.log()}")


def start(*servers: ServerHarness) -> None:
    for server in servers:
        server.start(wait_for="s2s")


def stop(*servers: ServerHarness) -> None:
    for server in servers:
        assert server.stop() == 0


def spoof(port: int, crt: Path, key: Path) -> bytes:
    """A raw server connection to example.org that authenticates as falcot.com with SASL EXTERNAL
    (its real certificate), then sends a stanza from another domain; returns what came back."""
    def read_until(sock: Any, marker: bytes) -> bytes:
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while marker not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    header = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
              b"xmlns:stream='http://etherx.jabber.org/streams' from='falcot.com' to='example.org' version='1.0'>")
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    raw.sendall(header)
    read_until(raw, b"</stream:features>")
    raw.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    read_until(raw, b"<proceed")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(str(crt), str(key))
    with context.wrap_socket(raw, server_hostname="example.org") as tls:
        tls.sendall(header)
        features = read_until(tls, b"</stream:features>")
        assert b"EXTERNAL" in features, features
        tls.sendall(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>ZmFsY290LmNvbQ==</auth>")
        assert b"<success" in read_until(tls, b"<success"), "EXTERNAL refused"
        tls.sendall(header)
        read_until(tls, b"stream:features")  # empty now: <stream:features/>
        tls.sendall(b"<message from='mallory@evil.example' to='alice@example.org' type='chat'>"
                    b"<body>I am not who I say</body></message>")
        return read_until(tls, b"</stream:stream>")


def test_federationWithCertificates(pair) -> None:
    """
    If each server trusts the other's certificate via [tls] ca (a test CA for falcot.com, the
    self-signed certificate itself for example.org), both links authenticate with SASL EXTERNAL,
    joe and alice chat both ways, a message to an unreachable domain bounces with
    remote-server-not-found, joe subscribes to alice's presence, alice joins a room on
    conference.falcot.com and her groupchat message reaches joe, and a stanza from a domain the
    link did not authenticate ends that stream with invalid-from.
    """
    falcot, example = pair["falcot"], pair["example"]
    start(falcot, example)

    async def scenario() -> None:
        joe = await online("joe@falcot.com/laptop", falcot.ports["c2s"], pair["ca"])
        alice = await online("alice@example.org/desk", example.ports["c2s"], pair["example_crt"])
        joe_inbox, alice_inbox, joe_errors = events(joe), events(alice), events(joe, "message_error")
        message = await chat(joe, "alice@example.org", alice_inbox, "Hello from falcot.com", timeout=TIMEOUT)
        assert str(message["from"]) == "joe@falcot.com/laptop"
        message = await chat(alice, "joe@falcot.com/laptop", joe_inbox, "Hi Joe, this is example.org", timeout=TIMEOUT)
        assert str(message["from"]) == "alice@example.org/desk"
        for n in range(3):  # the link is reused, in order
            await chat(joe, "alice@example.org", alice_inbox, f"again {n}", timeout=TIMEOUT)
        joe.send_message(mto="ghost@unreachable.example", mbody="anyone?", mtype="chat")
        error = await asyncio.wait_for(joe_errors.get(), TIMEOUT)
        assert error["error"]["condition"] == "remote-server-not-found"
        await subscribe(joe, alice)
        await remote_occupant(joe, alice)
        await offline(joe, alice)

    run(scenario)
    links = falcot.ctl("s2s")
    assert links.returncode == 0, links.stderr
    assert "falcot.com -> example.org  ready  TLS, certificate verified, SASL EXTERNAL  queued 0" in links.stdout
    assert "falcot.com <- example.org  ready" in links.stdout
    answer = spoof(example.ports["s2s"], pair["falcot_crt"], pair["falcot_key"])
    assert b"invalid-from" in answer, answer
    stop(falcot, example)
    stopped = falcot.ctl("s2s")
    assert stopped.returncode == 1 and "is it running?" in stopped.stderr
    assert "falcot.com->example.org outgoing link ready" in falcot.log()
    assert "(TLS, certificate verified, SASL EXTERNAL)" in falcot.log()
    assert "example.org->falcot.com outgoing link ready" in example.log()
    assert "(TLS, certificate verified, SASL EXTERNAL)" in example.log()
    assert "falcot.com->unreachable.example: attempt 1: connecting to" in falcot.log()
    assert "evil.example is not authenticated on this stream" in example.log()
    assert falcot.log().count("s2s falcot.com->example.org: new outgoing link") == 1


def test_federationWithDialback(pair) -> None:
    """
    If the same servers run without [tls] ca, neither certificate verifies, so each link
    authenticates with Server Dialback (each server checking keys with the other, the MUC
    domain included), and joe and alice still chat both ways and in a room.
    """
    falcot, example = pair["falcot"], pair["example"]
    for server in (falcot, example):
        del server.sections["tls"]["ca"]
        server.write_config()
    start(falcot, example)

    async def scenario() -> None:
        joe = await online("joe@falcot.com/laptop", falcot.ports["c2s"], pair["ca"])
        alice = await online("alice@example.org/desk", example.ports["c2s"], pair["example_crt"])
        joe_inbox, alice_inbox = events(joe), events(alice)
        await chat(joe, "alice@example.org", alice_inbox, "Dialback hello", timeout=TIMEOUT)
        await chat(alice, "joe@falcot.com/laptop", joe_inbox, "Dialback reply", timeout=TIMEOUT)
        await remote_occupant(joe, alice)  # conference.falcot.com is verified by dialback too
        await offline(joe, alice)

    run(scenario)
    stop(falcot, example)
    for server, local, remote in ((falcot, "falcot.com", "example.org"), (example, "example.org", "falcot.com")):
        log = server.log().split("unirtc stopped cleanly")[-2]  # this run only
        assert f"{local}->{remote} outgoing link ready" in log
        assert "(TLS, certificate not verified, dialback)" in log
        assert f"asked whether our dialback key for {local} is ours: valid" in log
    muc_link = [line for line in falcot.log().split("unirtc stopped cleanly")[-2].splitlines()
                if "s2s conference.falcot.com->example.org outgoing link ready" in line]
    assert len(muc_link) == 1 and "(TLS, certificate not verified, dialback)" in muc_link[0], muc_link


# -- Prosody -----------------------------------------------------------------------------------

PROSODY_CONFIG = """\
local base = "{base}"
pidfile = base .. "/prosody.pid"
data_path = base .. "/data"
{user}
interfaces = {{ "127.0.0.1" }}
local_interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
use_ipv6 = false
admin_socket = base .. "/prosody.sock"
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "posix" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
log = {{ debug = base .. "/prosody.log" }}
certificates = base .. "/certs"
ssl = {{ certificate = base .. "/certs/example.net.crt"; key = base .. "/certs/example.net.key"; {cafile} }}
-- falcot.com is found through the test's DNS server (SRV _xmpp-server._tcp.falcot.com)
unbound = {{ resolvconf = false; hoststxt = false; forward = "127.0.0.1@{dns}";
            options = {{ ["do-not-query-localhost:"] = "no" }} }}
VirtualHost "example.net"
"""

ZONE = """\
$ORIGIN falcot.com.
$TTL 60
@ IN SOA ns.falcot.com. admin.falcot.com. 1 3600 600 86400 60
@ IN NS ns.falcot.com.
@ IN A 127.0.0.1
ns IN A 127.0.0.1
_xmpp-server._tcp IN SRV 0 5 {port} falcot.com.
_xmpp-server._tcp.conference IN SRV 0 5 {port} falcot.com.
"""


def _prosody_missing() -> str | None:
    if shutil.which("prosody") is None or shutil.which("prosodyctl") is None:
        return "Debian's prosody package is not installed"
    probe = subprocess.run(["lua5.4", "-e", "require 'lunbound'"], capture_output=True)
    if probe.returncode != 0:
        return "lua-unbound is missing: Prosody could not be pointed at the test's DNS server"
    return None


class Prosody:
    """A Prosody for example.net in a throwaway folder, run as the prosody user when we are root."""

    def __init__(self, ca: TestCA, dns_port: int, trust_ca: bool) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="unirtc-prosody-"))  # pytest's tmp is root-only
        self.base.chmod(0o755)
        self.ports = {"c2s": free_port(), "s2s": free_port()}
        self.root = os.geteuid() == 0
        key, leaf = ca.issue(dns=("example.net",))
        certs = self.base / "certs"
        write_pair(certs, "example.net", key, [leaf])
        (certs / "ca.pem").write_bytes(pem(ca.certificate))
        for folder in ("data",):
            (self.base / folder).mkdir()
        cafile = 'cafile = base .. "/certs/ca.pem";' if trust_ca else ""
        user = 'prosody_user = "prosody"' if self.root else ""
        self.config = self.base / "prosody.cfg.lua"
        self.config.write_text(PROSODY_CONFIG.format(base=self.base, user=user, c2s=self.ports["c2s"],
                                                     s2s=self.ports["s2s"], cafile=cafile, dns=dns_port))
        if self.root:
            shutil.chown(self.base / "data", "prosody", "prosody")
            shutil.chown(self.base, "prosody", "prosody")
            for path in certs.iterdir():
                shutil.chown(path, "prosody", "prosody")
        self.process: subprocess.Popen | None = None

    def register(self, user: str, password: str) -> None:
        result = subprocess.run(["prosodyctl", "--config", str(self.config), "register", user, "example.net",
                                 password], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        extra: dict[str, Any] = {"user": "prosody", "group": "prosody"} if self.root else {}
        self.process = subprocess.Popen(["prosody", "--config", str(self.config), "-F"],
                                        stdout=open(self.base / "stdout.log", "ab"), stderr=subprocess.STDOUT,
                                        cwd=self.base, **extra)
        wait_for_port(self.ports["c2s"], process=self.process)
        wait_for_port(self.ports["s2s"], process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "prosody.log"):
            path = self.base / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class DnsServer:
    """``twistd dns`` serving the falcot.com zone on a loopback port (UDP and TCP)."""

    def __init__(self, directory: Path, s2s_port: int) -> None:
        self.port = free_port()
        zone = directory / "falcot.com.zone"
        zone.write_text(ZONE.format(port=s2s_port))
        self.log_path = directory / "dns.log"
        self.process = subprocess.Popen(
            [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "dns", "--port", str(self.port),
             "--interface", "127.0.0.1", "--bindzone", str(zone)],
            cwd=directory, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.mark.parametrize("trusted", [True, False], ids=["certificates", "dialback"])
def test_prosodyFederation(tmp_path, request, trusted: bool) -> None:
    """
    If falcot.com (unirtc) and example.net (a real Prosody) federate, with each trusting the
    other's test-CA certificate (SASL EXTERNAL both ways) or neither doing so (dialback both
    ways), joe@falcot.com and bob@example.net exchange messages both ways.
    """
    missing = _prosody_missing()
    assert missing is None, f"{missing}; the README's test command installs it"
    ca = TestCA()
    certs = tmp_path / "certs"
    key, leaf = ca.issue(dns=("falcot.com", "conference.falcot.com"))
    crt_path, key_path = write_pair(certs, "falcot.com", key, [leaf])
    (certs / "ca.pem").write_bytes(pem(ca.certificate))
    falcot = ServerHarness(tmp_path / "falcot", "falcot.com")
    dns = DnsServer(tmp_path, falcot.ports["s2s"])
    prosody = Prosody(ca, dns.port, trust_ca=trusted)
    passed = False
    try:
        falcot.sections["s2s"] = {"hosts": f"example.net=127.0.0.1:{prosody.ports['s2s']}"}
        falcot.sections["tls"] = {"certificate": str(crt_path), "key": str(key_path)}
        if trusted:
            falcot.sections["tls"]["ca"] = str(certs / "ca.pem")
        falcot.write_config()
        falcot.adduser("joe@falcot.com", PASSWORD)
        prosody.register("bob", PASSWORD)
        prosody.start()
        falcot.start(wait_for="s2s")

        async def scenario() -> None:
            joe = await online("joe@falcot.com/laptop", falcot.ports["c2s"], certs / "ca.pem")
            bob = await online("bob@example.net/phone", prosody.ports["c2s"], certs / "ca.pem")
            joe_inbox, bob_inbox = events(joe), events(bob)
            message = await chat(joe, "bob@example.net", bob_inbox, "Hello Prosody, from unirtc", timeout=TIMEOUT)
            assert str(message["from"]) == "joe@falcot.com/laptop"
            message = await chat(bob, "joe@falcot.com/laptop", joe_inbox, "Hello unirtc, from Prosody", timeout=TIMEOUT)
            assert str(message["from"]) == "bob@example.net/phone"
            await offline(joe, bob)

        run(scenario)
        assert falcot.stop() == 0
        log = falcot.log()
        how = "(TLS, certificate verified, SASL EXTERNAL)" if trusted else "(TLS, certificate not verified, dialback)"
        assert f"falcot.com->example.net outgoing link ready via 127.0.0.1:{prosody.ports['s2s']} " \
               f"(static route [s2s] hosts, STARTTLS) {how}" in log
        assert f"example.net->falcot.com incoming link authenticated from 127.0.0.1 {how}" in log
        prosody_log = prosody.log()
        assert "Accepting SASL EXTERNAL identity from falcot.com" in prosody_log if trusted \
            else "connection falcot.com->example.net is now authenticated for falcot.com" in prosody_log
        passed = True
    finally:
        falcot.stop()
        prosody.stop()
        dns.stop()
        if not passed:
            print(f"--- falcot.com log ---\n{falcot.log()}\n--- prosody log ---\n{prosody.log()}")
        prosody.cleanup()

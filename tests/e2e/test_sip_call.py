"""SIP calls and messages through the real server, driven by clients nobody here wrote.

SIPp (Debian ``sip-tester``) plays both phones: roland registers a contact with digest
authentication and a second SIPp instance answers there; joe calls ``sip:roland@falcot.com``
through the proxy, answers its 407, and the call rings, connects, is ACKed along the
Record-Route and hung up (SIPp exits 0 only if every message came as the scenario says).
sipsak pings the server with OPTIONS over UDP, TCP and TLS.  The RFC 4475 torture messages
are thrown at the UDP and TCP listeners, after which SIPp still registers with digest over
both and an OPTIONS still gets its 200.

sipsak writes only the first four digits of a five-digit port into its Request-URI, so the
SIP listeners here get four-digit ports.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.harness import ServerHarness, free_port
from tests.unit.sip_samples import CORPUS, EXPECTED
from unirtc.sip.message import SipParseError, SipResponse, StreamFramer, parse

SIPP_DIR = Path(__file__).parent / "sipp"
DOMAIN = "falcot.com"
PASSWORDS = {"joe": "joe-Secret-1", "roland": "roland-Secret-2"}



def short_port() -> int:
    """A port below 10000 free for TCP and UDP on loopback (see the module docstring)."""
    while True:
        port = random.randrange(4000, 9999)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def start(harness: ServerHarness) -> ServerHarness:
    """Users joe and roland, SIP on four-digit ports, server started."""
    sip, tls = short_port(), short_port()
    harness.ports.update(sip=sip, sip_tls=tls)
    loopback = ":interface=127.0.0.1"
    harness.sections["sip"]["listen"] = f"udp:{sip}{loopback} tcp:{sip}{loopback} tls:{tls}{loopback}"
    harness.write_config()
    for user, password in PASSWORDS.items():
        harness.adduser(f"{user}@{DOMAIN}", password)
    harness.start(wait_for="sip")
    return harness


class Sipp:
    """Runs SIPp scenarios from tests/e2e/sipp against the server, in ``folder``."""

    def __init__(self, harness: ServerHarness, folder: Path, transport: str = "u1") -> None:
        self.harness = harness
        self.folder = folder
        self.transport = transport

    def argv(self, scenario: str, port: int, *extra: str, client: bool = True) -> list[str]:
        argv = ["sipp"]
        if client:
            argv.append(f"127.0.0.1:{self.harness.ports['sip']}")
        return argv + ["-sf", str(SIPP_DIR / scenario), "-t", self.transport, "-m", "1",
                       "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_port()), "-nostdin",
                       "-trace_err", "-timeout", "15", "-timeout_error", "-key", "domain", DOMAIN,
                       *extra]

    def run(self, scenario: str, port: int, *extra: str) -> None:
        result = subprocess.run(self.argv(scenario, port, *extra), cwd=self.folder,
                                capture_output=True, timeout=30)
        assert result.returncode == 0, self.failure(scenario, result.returncode)

    def serve(self, scenario: str, port: int) -> subprocess.Popen:
        """Start an answering SIPp on ``port`` and wait until it has bound it."""
        process = subprocess.Popen(self.argv(scenario, port, client=False), cwd=self.folder,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kind = socket.SOCK_DGRAM if self.transport.startswith("u") else socket.SOCK_STREAM
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    return process
            time.sleep(0.05)
        process.kill()
        raise TimeoutError(f"SIPp did not bind port {port}")

    def register(self, user: str, contact_port: int) -> None:
        self.run("register_contact.xml", free_port(), "-s", user, "-au", user, "-ap", PASSWORDS[user],
                 "-auth_uri", DOMAIN, "-key", "contact_port", str(contact_port))

    def finish(self, process: subprocess.Popen, scenario: str) -> None:
        try:
            status = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
        assert status == 0, self.failure(scenario, status)

    def failure(self, scenario: str, status: int) -> str:
        logs = sorted(self.folder.glob(f"{Path(scenario).stem}_*_errors.log"))
        text = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
        return f"sipp {scenario} exited {status}\n{text}"


def call(harness: ServerHarness, folder: Path, transport: str) -> None:
    sipp = Sipp(harness, folder, transport)
    phone = free_port()
    sipp.register("roland", phone)
    answering = sipp.serve("uas_call.xml", phone)
    try:
        sipp.run("uac_call.xml", free_port(), "-s", "roland", "-key", "caller", "joe", "-au", "joe",
                 "-ap", PASSWORDS["joe"], "-auth_uri", f"roland@{DOMAIN}")
    finally:
        sipp.finish(answering, "uas_call.xml")


def test_callOverUdp(harness, tmp_path) -> None:
    """
    If roland has registered a phone and joe calls sip:roland@falcot.com over UDP, joe must
    answer a 407 and then the call rings, connects, is ACKed through the proxy and hung up.
    """
    call(start(harness), tmp_path, "u1")


def test_callOverTcp(harness, tmp_path) -> None:
    """
    If the same call runs over TCP, the proxy opens a connection to roland's phone and the
    in-dialog requests reuse the connections on both sides.
    """
    call(start(harness), tmp_path, "t1")


def test_messageAndUnavailable(harness, tmp_path) -> None:
    """
    If joe sends a MESSAGE to roland's registered phone, it is delivered (the phone echoes
    the text back in its 200); once the phone has gone, a call to roland gets 480.
    """
    start(harness)
    sipp = Sipp(harness, tmp_path)
    phone = free_port()
    sipp.register("roland", phone)
    receiving = sipp.serve("uas_message.xml", phone)
    try:
        sipp.run("uac_message.xml", free_port(), "-s", "roland", "-key", "caller", "joe", "-au", "joe",
                 "-ap", PASSWORDS["joe"], "-auth_uri", f"roland@{DOMAIN}")
    finally:
        sipp.finish(receiving, "uas_message.xml")
    # A fresh account with no phone at all.
    harness.adduser(f"bob@{DOMAIN}", "bob-Secret-3")
    sipp.run("uac_unavailable.xml", free_port(), "-s", "bob", "-key", "caller", "joe", "-au", "joe",
             "-ap", PASSWORDS["joe"], "-auth_uri", f"bob@{DOMAIN}")


def sipsak_options(harness: ServerHarness, transport: str) -> str:
    """sipsak's output for one OPTIONS to the server itself.

    Over TLS, sipsak 0.9.8.1 takes the TLS 1.3 NewSessionTicket record for an empty answer
    and gives up, so its GnuTLS is limited to TLS 1.2 by a priority override file.
    """
    port = harness.ports["sip_tls" if transport == "tls" else "sip"]
    argv = ["sipsak", "-v", "--transport", transport, "-s", f"sip:127.0.0.1:{port}"]
    env = dict(os.environ)
    if transport == "tls":
        argv.append("--tls-ignore-cert-failure")  # a self-signed certificate for falcot.com
        override = harness.directory / "gnutls-tls12.cfg"
        override.write_text("[overrides]\ndisabled-version = tls1.3\n")
        env["GNUTLS_SYSTEM_PRIORITY_FILE"] = str(override)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env)
    return result.stdout + result.stderr


def test_optionsPing(harness) -> None:
    """
    If sipsak sends OPTIONS to the server itself over UDP, TCP or TLS, it gets 200 OK.
    """
    start(harness)
    for transport in ("udp", "tcp", "tls"):
        output = sipsak_options(harness, transport)
        assert "200 OK" in output, f"{transport}: {output}"


def first_response(data: bytes, stream: bool) -> SipResponse | None:
    """The first response in what a socket received (None for nothing or garbage)."""
    try:
        frames = StreamFramer().feed(data) if stream else [data]
        messages = [parse(f, stream) for f in frames if isinstance(f, bytes)]
    except SipParseError:
        return None
    return next((m for m in messages if isinstance(m, SipResponse)), None)


def throw(port: int, messages: dict[str, bytes], kind: int) -> dict[str, SipResponse | None]:
    """Send each message on its own UDP socket or TCP connection, all at once, then read for a
    second: the first response each one got."""
    sockets = {}
    for name, data in messages.items():
        sock = socket.socket(socket.AF_INET, kind)
        if kind == socket.SOCK_STREAM:
            sock.connect(("127.0.0.1", port))
            sock.sendall(data)
        else:
            sock.sendto(data, ("127.0.0.1", port))
        sock.setblocking(False)
        sockets[name] = sock
    time.sleep(1.0)
    answers = {}
    for name, sock in sockets.items():
        received = b""
        try:
            while chunk := sock.recv(65535):
                received += chunk
                if kind == socket.SOCK_DGRAM:
                    break
        except (BlockingIOError, ConnectionError):
            pass
        sock.close()
        answers[name] = first_response(received, kind == socket.SOCK_STREAM)
    return answers


def test_tortureMessagesThenRegisterAndOptions(harness, tmp_path) -> None:
    """
    If every RFC 4475 torture message is sent over UDP and over TCP, each malformed one gets
    its 4xx/505 or nothing, and afterwards SIPp registers joe with digest over UDP and over
    TCP (both bindings stored) and OPTIONS over both transports still gets 200.
    """
    start(harness)
    port = harness.ports["sip"]
    messages = {name: (CORPUS / "messages" / f"{name}.dat").read_bytes() for name in EXPECTED}
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        for name, answer in throw(port, messages, kind).items():
            if EXPECTED[name] is not None:
                assert answer is None or answer.status == EXPECTED[name], (kind, name, answer)
    assert harness.process.poll() is None
    for transport in ("u1", "t1"):
        folder = tmp_path / transport
        folder.mkdir()
        Sipp(harness, folder, transport).run("register.xml", free_port(), "-s", "joe", "-au", "joe",
                                             "-ap", PASSWORDS["joe"], "-auth_uri", DOMAIN)
    listed = harness.ctl("sip-bindings", f"joe@{DOMAIN}")
    assert listed.returncode == 0, listed.stderr
    contacts = [line.split()[1] for line in listed.stdout.splitlines()]
    assert sorted(c.rsplit("transport=", 1)[-1].upper() for c in contacts) == ["TCP", "UDP"], listed.stdout
    for transport in ("udp", "tcp"):
        output = sipsak_options(harness, transport)
        assert "200 OK" in output, f"{transport}: {output}"

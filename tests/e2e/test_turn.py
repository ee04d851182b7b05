"""TURN and STUN against the real server and real peers nobody here wrote (Debian coturn).

- the embedded STUN responder answers coturn's ``turnutils_stunclient`` and a raw socket;
- ``GET /turn`` over HTTPS issues credentials, refuses, throttles and never logs passwords;
- Debian's ``turnserver`` (coturn), configured from ``etc/turnserver.conf``, accepts the issued
  credentials from ``turnutils_uclient`` (allocation and data exchange) and refuses tampered,
  expired and foreign-secret ones;
- ``unirtc-ctl turn-credentials`` prints the same object;
- ``etc/falcot.com.zone`` holds every record ``unirtc-ctl check`` prints for ``etc/falcot.ini``.
"""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, free_port, wait_for_port
from unirtc import ctl
from unirtc.config import load_settings
from unirtc.dns import zone_records
from unirtc.turn.credentials import check_rest_credentials, rest_credentials
from unirtc.turn.stun import Class, Message, Method, parse_message

SECRET = "e2e-shared-secret-with-coturn"
PASSWORD = "s3cret-Passw0rd"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def stunclient(port: int, host: str) -> tuple[str, int]:
    """Run coturn's turnutils_stunclient; returns the reflexive address it printed."""
    result = subprocess.run(["turnutils_stunclient", "-p", str(port), host],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"UDP reflexive addr: (.+):(\d+)", result.stdout)
    assert match, result.stdout
    return match.group(1), int(match.group(2))


def test_stunResponderAnswersRealClientsAndSurvivesGarbage(harness) -> None:
    """
    If the responder listens dual-stack, turnutils_stunclient learns 127.0.0.1 over IPv4 and ::1
    over IPv6; a raw socket sending garbage and a malformed Binding request gets no answer and a
    400, then its exact address for a valid request; drops are logged at debug, a few lines only.
    """
    harness.sections["turn"]["stun"] = f"udp:{harness.ports['stun']}:interface=\\:\\:"
    harness.write_config()
    harness.start()
    port = harness.ports["stun"]
    host, mapped_port = stunclient(port, "127.0.0.1")
    assert host == "127.0.0.1" and 1024 <= mapped_port < 65536
    if ipv6_loopback():
        host, mapped_port = stunclient(port, "::1")
        assert host == "::1" and 1024 <= mapped_port < 65536

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        for junk in [b"", b"\x00", b"GET / HTTP/1.0\r\n\r\n", b"\xff" * 1400, bytes(20)] * 10:
            sock.sendto(junk, ("127.0.0.1", port))
        malformed = bytes.fromhex("0001 0008 2112a442") + b"T" * 12 + bytes.fromhex("0006 0004 fffefdfc")
        sock.sendto(malformed, ("127.0.0.1", port))
        error = parse_message(sock.recv(2048))
        assert (error.transaction_id, error.attributes["ERROR-CODE"][0]) == (b"T" * 12, 400)
        request = Message(Method.BINDING, Class.REQUEST)
        request.add_fingerprint()
        sock.sendto(bytes(request), ("127.0.0.1", port))
        answer = parse_message(sock.recv(2048))
        assert answer.transaction_id == request.transaction_id
        assert answer.message_class == Class.RESPONSE
        assert answer.attributes["XOR-MAPPED-ADDRESS"] == sock.getsockname()
    assert harness.stop() == 0
    drops = [line for line in harness.log().splitlines() if "STUN responder: dropped" in line]
    assert 1 <= len(drops) <= 6  # 50 junk datagrams: logged at the 1st, 2nd, 4th... 32nd
    assert "dropped 32 datagram(s)" in drops[-1]


def test_restEndpointIssuesRefusesAndThrottles(harness) -> None:
    """
    If an account asks GET /turn over HTTPS, it gets JSON credentials signed with [turn] secret;
    without credentials it gets 401 with a Basic challenge, 405 for POST, 400 for a bad ttl;
    after repeated wrong passwords, 429 with Retry-After; no password reaches the log.
    """
    harness.sections["turn"].update({"secret": SECRET, "ttl": "600"})
    harness.write_config()
    harness.adduser("joe@falcot.com", PASSWORD)
    harness.start()

    status, headers, body = harness.https("/turn", headers=basic("joe", PASSWORD))
    assert status == 200, body
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
    issued = json.loads(body)
    assert set(issued) == {"username", "password", "ttl", "uris", "iceServers"}
    expiry, account = issued["username"].split(":", 1)
    assert account == "joe@falcot.com" and issued["ttl"] == 600
    assert abs(int(expiry) - 600 - time.time()) < 30
    assert check_rest_credentials(SECRET, issued["username"], issued["password"], time.time())
    assert issued["iceServers"][-1]["credential"] == issued["password"]

    status, headers, _ = harness.https("/turn")
    assert (status, headers["www-authenticate"]) == (401, 'Basic realm="falcot.com", charset="UTF-8"')
    assert harness.https("/turn", "POST", headers=basic("joe", PASSWORD))[0] == 405
    assert harness.https("/turn?ttl=abc", headers=basic("joe", PASSWORD))[0] == 400
    assert harness.https("/turn?ttl=601", headers=basic("joe", PASSWORD))[0] == 400
    assert json.loads(harness.https("/turn?ttl=30", headers=basic("joe@falcot.com", PASSWORD))[2])["ttl"] == 30

    statuses = [harness.https("/turn", headers=basic("joe", "wrong-guess"))[0] for _ in range(6)]
    assert statuses == [401] * 6
    status, headers, _ = harness.https("/turn", headers=basic("joe", PASSWORD))
    assert status == 429 and int(headers["retry-after"]) >= 1

    assert harness.stop() == 0
    log = harness.log()
    assert "Issued TURN credentials to joe@falcot.com" in log
    assert "failed login for joe@falcot.com" in log
    for secret in (PASSWORD, "wrong-guess", issued["password"], SECRET):
        assert secret not in log


def test_ctlTurnCredentials(harness, capsys, monkeypatch) -> None:
    """
    If an admin runs unirtc-ctl turn-credentials for an account, it prints credentials signed
    with the secret (--json: the REST object, --ttl honoured); an unknown account, a ttl over
    [turn] ttl, or a server without a secret are errors.  (The console script once, then
    ``unirtc.ctl.main`` in-process: each process start costs a second of imports.)
    """
    harness.sections["turn"].update({"secret": SECRET, "ttl": "600"})
    harness.write_config()
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert ctl.main(["-c", str(harness.ini), "adduser", "joe@falcot.com", "--password-stdin"]) == 0

    result = harness.ctl("turn-credentials", "joe@falcot.com", "--json", "--ttl", "120")
    assert result.returncode == 0, result.stderr
    issued = json.loads(result.stdout)
    assert set(issued) == {"username", "password", "ttl", "uris", "iceServers"} and issued["ttl"] == 120
    assert issued["username"].endswith(":joe@falcot.com")
    assert check_rest_credentials(SECRET, issued["username"], issued["password"], time.time())

    capsys.readouterr()
    assert ctl.main(["-c", str(harness.ini), "turn-credentials", "joe@falcot.com"]) == 0
    output = capsys.readouterr().out
    username = re.search(r"^username: (\S+)$", output, re.M).group(1)
    password = re.search(r"^password: (\S+)$", output, re.M).group(1)
    assert check_rest_credentials(SECRET, username, password, time.time())
    assert re.search(r"^expires: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in 600 s\)$", output, re.M)

    for argv, message in ((["nobody@falcot.com"], "no account nobody@falcot.com"),
                          (["joe@falcot.com", "--ttl", "601"], "ttl must be between 1 and 600"),
                          (["joe@example.org"], "does not serve accounts on example.org")):
        assert ctl.main(["-c", str(harness.ini), "turn-credentials", *argv]) == 1
        assert message in capsys.readouterr().err
    assert ctl.main(["-c", str(harness.ini), "disable", "joe@falcot.com"]) == 0
    assert ctl.main(["-c", str(harness.ini), "turn-credentials", "joe@falcot.com"]) == 1
    assert "is disabled" in capsys.readouterr().err
    del harness.sections["turn"]["secret"]
    harness.write_config()
    assert ctl.main(["-c", str(harness.ini), "turn-credentials", "joe@falcot.com"]) == 1
    assert "no TURN secret is configured" in capsys.readouterr().err


class Coturn:
    """Debian's turnserver on loopback, configured from etc/turnserver.conf with test overrides."""

    # Keys the test replaces: loopback ports and files, the shared secret, logging.
    REPLACED = ("listening-port", "listening-ip", "relay-ip", "external-ip", "static-auth-secret",
                "syslog", "log-file", "pidfile", "userdb")

    def __init__(self, directory: Path, secret: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.log_path = directory / "turnserver.log"
        lines = []
        for line in (REPO / "etc" / "turnserver.conf").read_text().splitlines():
            key = line.split("=", 1)[0].strip()
            if line.strip() and not line.startswith("#") and key not in self.REPLACED:
                lines.append(line)
        lines += [
            f"listening-port={self.port}", "listening-ip=127.0.0.1", "relay-ip=127.0.0.1",
            f"static-auth-secret={secret}", f"log-file={self.log_path}", f"pidfile={directory / 'turnserver.pid'}",
            f"userdb={directory / 'turndb'}", "no-stdout-log", "verbose",
            # The one loopback peer the test relays to (the shipped config denies all of 127/8).
            "allowed-peer-ip=127.0.0.1", "allow-loopback-peers",
        ]
        self.config = directory / "turnserver.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(["turnserver", "-c", str(self.config)], cwd=self.directory,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=20, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def uclient(self, username: str, password: str, *extra: str, background: bool = False):
        """turnutils_uclient: one allocation pair exchanging one message each way (-y) by default."""
        argv = ["turnutils_uclient", "-u", username, "-w", password, "-p", str(self.port),
                "-n", "1", "-m", "1", "-c", *(extra or ("-e", "127.0.0.1", "-y")), "127.0.0.1"]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)


@pytest.fixture
def coturn(tmp_path):
    server = Coturn(tmp_path, SECRET)
    yield server
    server.stop()


def test_coturnAcceptsIssuedCredentialsOnly(harness, coturn) -> None:
    """
    If coturn runs with the shipped configuration and unirtc's secret, credentials fetched from
    GET /turn allocate a relay and exchange data through it; the same with a tampered password,
    after expiry, or signed with another secret are refused (401); and the shipped deny list
    refuses relaying to loopback addresses not explicitly allowed (403).
    """
    harness.sections["turn"].update({"secret": SECRET, "ttl": "600"})
    harness.write_config()
    harness.adduser("joe@falcot.com", PASSWORD)
    harness.start()
    coturn.start()

    status, _, body = harness.https("/turn", headers=basic("joe", PASSWORD))
    assert status == 200, body
    issued = json.loads(body)
    status, _, body = harness.https("/turn?ttl=1", headers=basic("joe", PASSWORD))
    assert status == 200, body
    short_lived = json.loads(body)

    # The successful run waits 1-6 s before sending (uclient's own random delay): overlap it.
    accepted = coturn.uclient(issued["username"], issued["password"], background=True)
    try:
        tampered = coturn.uclient(issued["username"], issued["password"][:-2] + "A=")
        foreign = coturn.uclient(*rest_credentials("another-secret", "joe@falcot.com", 600, time.time()))
        denied_peer = coturn.uclient(issued["username"], issued["password"], "-e", "127.0.0.2")
        expiry = int(short_lived["username"].split(":", 1)[0])
        time.sleep(max(0.0, expiry + 1.1 - time.time()))  # coturn refuses once expiry < now
        expired = coturn.uclient(short_lived["username"], short_lived["password"])
        output, _ = accepted.communicate(timeout=30)
    finally:
        if accepted.poll() is None:
            accepted.kill()
            accepted.wait()

    log = coturn.log()
    assert accepted.returncode == 0, output + log
    sent = re.search(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)$", output, re.M)
    assert sent and int(sent.group(1)) > 0 and sent.group(1) == sent.group(2), output
    assert "Total lost packets 0 " in output
    assert f"user <{issued['username']}>: incoming packet ALLOCATE processed, success" in log

    for refused in (tampered, foreign, expired):
        assert refused.returncode != 0 and "Cannot complete Allocation" in refused.stdout, refused.stdout
    assert f"user <{short_lived['username']}>: incoming packet message processed, error 401" in log
    assert denied_peer.returncode != 0 and "403 (Forbidden IP)" in denied_peer.stdout, denied_peer.stdout


def test_zoneFileHoldsEveryRecordCheckPrints() -> None:
    """
    If unirtc-ctl check derives DNS records from etc/falcot.ini, every one of them is in
    etc/falcot.com.zone, and every SRV target there has an address record.
    """
    zone = (REPO / "etc" / "falcot.com.zone").read_text()
    lines = {" ".join(line.split()) for line in zone.splitlines() if line and not line.startswith(";")}
    expected = zone_records(load_settings(REPO / "etc" / "falcot.ini"))
    assert expected and [r for r in expected if " ".join(r.split()) not in lines] == []
    hosts = {"falcot.com." if name == "@" else f"{name}.falcot.com."
             for name, kind in re.findall(r"^(\S+)\s+IN\s+(A|AAAA)\s", zone, re.M)}
    targets = set(re.findall(r"IN SRV \d+ \d+ \d+ (\S+)$", zone, re.M))
    assert targets and targets <= hosts
    assert "turn-server.falcot.com." in targets


def test_turnserverConfDeniesInternalPeers() -> None:
    """
    If etc/turnserver.conf is used as shipped, it takes unirtc's REST credentials on port 3467
    in realm falcot.com and denies relaying to loopback, private, CGNAT and link-local ranges.
    """
    conf = (REPO / "etc" / "turnserver.conf").read_text()
    settings = {line.split("=", 1)[0] for line in conf.splitlines() if line and not line.startswith("#")}
    assert {"use-auth-secret", "static-auth-secret", "fingerprint", "no-cli"} <= settings
    assert re.search(r"^listening-port=3467$", conf, re.M) and re.search(r"^realm=falcot.com$", conf, re.M)
    denied = set(re.findall(r"^denied-peer-ip=(\S+)$", conf, re.M))
    for block in ("0.0.0.0-0.255.255.255", "10.0.0.0-10.255.255.255", "100.64.0.0-100.127.255.255",
                  "127.0.0.0-127.255.255.255", "169.254.0.0-169.254.255.255", "172.16.0.0-172.31.255.255",
                  "192.168.0.0-192.168.255.255", "::1", "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                  "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"):
        assert block in denied, block
    assert not re.search(r"^allowed-peer-ip", conf, re.M)

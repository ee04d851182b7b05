"""Test doubles for XMPP protocol tests: a fake server (router, bus, directory) and scripted
clients on StringTransports, whose output is read back with our own stream parser."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish
from zope.interface import directlyProvides

from unirtc.directory.secrets import derive_scram, salted_password, scram_keys
from unirtc.directory.store import Credentials
from unirtc.plugin import HookBus
from unirtc.throttle import FailureThrottle
from unirtc.xmpp.c2s import C2SSettings, ClientSession
from unirtc.xmpp.c2s_sasl import AuthSettings
from unirtc.xmpp.component import NS_COMPONENT, ComponentSession, ComponentSettings
from unirtc.xmpp.parser import Stanza, StreamClosed, StreamOpened, StreamParser
from unirtc.xmpp.router import Router
from unirtc.xmpp.stream import XmppStream

DOMAIN = "falcot.com"
HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='falcot.com' version='1.0'>")
SALT = b"0123456789abcdef"


@cache
def test_certificate() -> X509:
    """A small self-signed EC certificate, standing in for the server's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(now).not_valid_after(now + timedelta(days=1))
                   .sign(key, hashes.SHA384()))
    return X509.from_cryptography(certificate)


class FakeTLSConnection:
    """The parts of a pyOpenSSL Connection that channel binding reads."""

    def __init__(self, version: str = "TLSv1.3") -> None:
        self.version = version

    def get_protocol_version_name(self) -> str:
        return self.version

    def export_keying_material(self, label: bytes, length: int, context: bytes | None = None) -> bytes:
        return hashlib.sha256(b"fake exporter " + label).digest()[:length]

    def get_certificate(self) -> X509:
        return test_certificate()


class TLSStringTransport(StringTransport):
    """A StringTransport that can 'start TLS': it then provides ISSLTransport."""

    def __init__(self, peer_host: str = "192.0.2.1", version: str = "TLSv1.3") -> None:
        from twisted.internet.address import IPv4Address

        super().__init__(peerAddress=IPv4Address("TCP", peer_host, 40000))
        self.tls_creator: Any = None
        self.version = version
        self.aborted = False

    def startTLS(self, creator: Any) -> None:
        self.tls_creator = creator
        directlyProvides(self, ISSLTransport)

    def getHandle(self) -> FakeTLSConnection:
        return FakeTLSConnection(self.version)

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


class FakeDirectory:
    """Accounts with real SCRAM secrets; ``hold()`` makes the next lookups wait for ``release()``."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], Credentials] = {}
        self.lookups: list[tuple[str, str]] = []
        self.held: list[tuple[Deferred[Credentials | None], Credentials | None]] | None = None

    def add(self, localpart: str, password: str, disabled: bool = False) -> None:
        scram = {h: derive_scram(h, password, SALT) for h in ("sha1", "sha256")}
        self.accounts[(localpart, DOMAIN)] = Credentials(localpart, DOMAIN, disabled, scram, {})

    def credentials(self, localpart: str, domain: str) -> Deferred[Credentials | None]:
        self.lookups.append((localpart, domain))
        found = self.accounts.get((localpart, domain))
        if self.held is None:
            return succeed(found)
        d: Deferred[Credentials | None] = Deferred()
        self.held.append((d, found))
        return d

    def hold(self) -> None:
        self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for d, found in held:
            d.callback(found)

    def exists(self, localpart: str, domain: str) -> Deferred[bool]:
        found = self.accounts.get((localpart, domain))
        return succeed(found is not None and not found.disabled)


@dataclass
class FakeServer:
    """A router, plugin bus, directory and listener settings wired as service.py wires them."""

    clock: Clock = field(default_factory=Clock)
    require_tls: bool = True
    login_timeout: float = 60.0
    max_stanza: int = 262144
    components: dict[str, str] = field(default_factory=lambda: {"bot.falcot.com": "s3cret"})

    def __post_init__(self) -> None:
        self.bus = HookBus()
        self.directory = FakeDirectory()
        self.router = Router({DOMAIN}, self.bus, self.directory.exists)
        self.throttle = FailureThrottle()
        self.auth = AuthSettings(DOMAIN, self.directory.credentials, self.throttle, self.clock, b"k" * 32)
        self.tls_creator = object()
        self.c2s = C2SSettings(self.auth, self.router, self.bus, self.clock, tls=self.tls_creator,
                               require_tls=self.require_tls, login_timeout=self.login_timeout)
        self.streams: set[XmppStream] = set()

    def connect(self, peer_host: str = "192.0.2.1", tls_version: str = "TLSv1.3") -> Client:
        stream = XmppStream(lambda s: ClientSession(self.c2s, s), self.clock,
                            max_stanza=self.max_stanza, registry=self.streams)
        transport = TLSStringTransport(peer_host, tls_version)
        stream.makeConnection(transport)
        return Client(stream, transport)

    def connect_component(self) -> Client:
        settings = ComponentSettings(self.components, self.router, self.clock)
        stream = XmppStream(lambda s: ComponentSession(settings, s), self.clock, namespace=NS_COMPONENT,
                            registry=self.streams)
        transport = TLSStringTransport()
        stream.makeConnection(transport)
        return Client(stream, transport, namespace=NS_COMPONENT)

    def login(self, localpart: str = "joe", resource: str = "laptop", password: str = "secret") -> Client:
        """A bound client (account created if needed), via STARTTLS and PLAIN."""
        if (localpart, DOMAIN) not in self.directory.accounts:
            self.directory.add(localpart, password)
        client = self.connect()
        client.open()
        client.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        client.restarted()
        client.open()
        plain = base64.b64encode(f"\0{localpart}\0{password}".encode()).decode()
        client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
        assert client.last().name == "success", client.raw
        client.restarted()
        client.open()
        client.bind(resource)
        client.clear()
        return client


class Client:
    """A scripted peer: ``send`` raw bytes, read back parsed elements with ``elements()``."""

    def __init__(self, stream: XmppStream, transport: TLSStringTransport, namespace: str = "jabber:client") -> None:
        self.stream = stream
        self.transport = transport
        self.namespace = namespace
        self._parser = StreamParser(10_000_000, namespace)
        self._read = 0
        self.received: list[domish.Element] = []
        self._header: dict[str, str] | None = None
        self.closed = False

    def send(self, data: bytes | str) -> None:
        self.stream.dataReceived(data.encode() if isinstance(data, str) else data)

    def open(self, header: bytes = HEADER) -> None:
        self.send(header)

    def restarted(self) -> None:
        """The stream restarts (after STARTTLS or SASL): expect a new server header."""
        self._pump()
        self._parser = StreamParser(10_000_000, self.namespace)
        self._read = len(self.transport.value())

    def _pump(self) -> None:
        value = self.transport.value()
        data, self._read = value[self._read:], len(value)
        for event in self._parser.feed(data):
            if isinstance(event, Stanza):
                self.received.append(event.element)
            elif isinstance(event, StreamOpened):
                self._header = event.attrs
            elif isinstance(event, StreamClosed):
                self.closed = True

    @property
    def header(self) -> dict[str, str] | None:
        """The attributes of the server's latest stream header."""
        self._pump()
        return self._header

    def elements(self) -> list[domish.Element]:
        self._pump()
        return self.received

    def last(self) -> domish.Element:
        return self.elements()[-1]

    def clear(self) -> None:
        self._pump()
        self.received = []

    @property
    def raw(self) -> bytes:
        return self.transport.value()

    @property
    def disconnected(self) -> bool:
        return self.transport.disconnecting

    def stream_error(self) -> str | None:
        """The condition of the stream error the server sent, if any."""
        for element in self.elements():
            if element.name == "error" and element.uri == "http://etherx.jabber.org/streams":
                for child in element.elements():
                    if child.name != "text":
                        return child.name
        return None

    def bind(self, resource: str | None = None) -> str:
        inner = f"<resource>{resource}</resource>" if resource else ""
        self.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>")
        reply = self.last()
        assert reply.getAttribute("type") == "result", reply.toXml()
        return str(next(reply.elements()).jid)

    def lose(self) -> None:
        """The TCP connection drops."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.stream.connectionLost(Failure(ConnectionDone()))


def scram_client_final(password: str, hash_name: str, client_first_bare: str, server_first: str,
                       gs2_header: bytes) -> tuple[str, bytes]:
    """A correct SCRAM client's final message and the server signature it expects."""
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = salted_password(hash_name, password, base64.b64decode(fields["s"]), int(fields["i"]))
    client_key, stored_key, server_key = scram_keys(hash_name, salted)
    without_proof = f"c={base64.b64encode(gs2_header).decode()},r={fields['r']}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    server_signature = hmac.new(server_key, auth_message, hash_name).digest()
    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
    return final, b"v=" + base64.b64encode(server_signature)

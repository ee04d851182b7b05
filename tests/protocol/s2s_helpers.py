"""Test doubles for federation protocol tests: a Federation on a Clock, peers on StringTransports
that can 'start TLS' and present a certificate chain, and a link manager whose connector hands
out scripted peer streams instead of sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure
from twisted.words.xish import domish
from zope.interface import directlyProvides

from tests.s2s_pki import TestCA, self_signed
from unirtc.plugin import HookBus
from unirtc.xmpp.errors import NS_STREAMS
from unirtc.xmpp.jid import JID
from unirtc.xmpp.parser import Stanza, StreamClosed, StreamOpened, StreamParser
from unirtc.xmpp.peer_identity import TrustStore, check_peer
from unirtc.xmpp.resolver import S2SResolver, Target
from unirtc.xmpp.router import Router
from unirtc.xmpp.s2s import Federation
from unirtc.xmpp.s2s_in import IncomingSession
from unirtc.xmpp.s2s_links import LinkManager
from unirtc.xmpp.stream import XmppStream

LOCAL, REMOTE = "falcot.com", "example.org"
STREAMS = "xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"
PEER_HEADER = f"<stream:stream {STREAMS} from='{REMOTE}' to='{LOCAL}' version='1.0'>".encode()
NO_DB_HEADER = (f"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
                f"from='{REMOTE}' to='{LOCAL}' version='1.0'>").encode()


def answer_header(stream_id: str = "peer-stream-1", dialback: bool = True) -> bytes:
    """The header a receiving server answers our outgoing stream with."""
    db = STREAMS if dialback else STREAMS.replace(" xmlns:db='jabber:server:dialback'", "")
    return f"<stream:stream {db} from='{REMOTE}' to='{LOCAL}' id='{stream_id}' version='1.0'>".encode()


class Peer:
    """The other server, scripted: ``send`` bytes to our stream, read back what we wrote.

    Each of our stream headers starts a new document (after STARTTLS or SASL), so the reader
    starts a fresh parser at every ``<?xml`` declaration we write.
    """

    MARK = b"<?xml version='1.0'?>"

    def __init__(self, stream: XmppStream, transport: PeerTransport) -> None:
        self.stream = stream
        self.transport = transport
        self._parser = StreamParser(10_000_000, "jabber:server")
        self._read = 0
        self._headers: list[dict[str, str]] = []
        self._prefixes: list[dict[str, str]] = []
        self.received: list[domish.Element] = []
        self._closed = False

    def send(self, data: bytes | str) -> None:
        self.stream.dataReceived(data.encode() if isinstance(data, str) else data)

    def _pump(self) -> None:
        value = self.transport.value()
        data, self._read = value[self._read:], len(value)
        pieces = data.split(self.MARK)
        self._feed(pieces[0])
        for piece in pieces[1:]:
            self._parser = StreamParser(10_000_000, "jabber:server")
            self._feed(self.MARK + piece)

    def _feed(self, data: bytes) -> None:
        for event in self._parser.feed(data):
            if isinstance(event, Stanza):
                self.received.append(event.element)
            elif isinstance(event, StreamOpened):
                self._headers.append(event.attrs)
                self._prefixes.append(event.prefixes)
            elif isinstance(event, StreamClosed):
                self._closed = True

    @property
    def headers(self) -> list[dict[str, str]]:
        """Every stream header we sent, in order."""
        self._pump()
        return self._headers

    @property
    def closed(self) -> bool:
        """Whether we closed our stream."""
        self._pump()
        return self._closed

    @property
    def prefixes(self) -> list[dict[str, str]]:
        """The namespace prefixes each of our headers declared."""
        self._pump()
        return self._prefixes

    @property
    def header(self) -> dict[str, str]:
        return self.headers[-1]

    def elements(self) -> list[domish.Element]:
        self._pump()
        return self.received

    def last(self) -> domish.Element:
        return self.elements()[-1]

    def clear(self) -> None:
        self._pump()
        self.received = []

    def named(self, name: str) -> list[domish.Element]:
        return [e for e in self.elements() if e.name == name]

    def stream_error(self) -> str | None:
        for element in self.elements():
            if element.name == "error" and element.uri == NS_STREAMS:
                return next(c.name for c in element.elements() if c.name != "text")
        return None

    @property
    def disconnected(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The TCP connection goes away."""
        self.stream.connectionLost(Failure(ConnectionDone()))


def features(*children: str) -> str:
    return f"<stream:features>{''.join(children)}</stream:features>"


STARTTLS = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
EXTERNAL = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
DIALBACK = "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
PROCEED = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"


class PeerConnection:
    """The parts of a pyOpenSSL Connection ``peer_certificates`` reads (server-side semantics:
    the leaf apart from the rest of the chain)."""

    def __init__(self, chain: list[x509.Certificate]) -> None:
        self.chain = chain

    def get_peer_certificate(self, as_cryptography: bool = False) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    def get_peer_cert_chain(self, as_cryptography: bool = False) -> list[x509.Certificate] | None:
        return self.chain[1:] or None


class PeerTransport(StringTransport):
    """A StringTransport that can start TLS (then provides ISSLTransport) and shows ``chain``."""

    def __init__(self, chain: list[x509.Certificate], direct_tls: bool = False) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "192.0.2.7", 40269))
        self.chain = chain
        self.tls_creator: Any = None
        if direct_tls:
            directlyProvides(self, ISSLTransport)

    def startTLS(self, creator: Any) -> None:
        self.tls_creator = creator
        directlyProvides(self, ISSLTransport)

    def getHandle(self) -> PeerConnection:
        return PeerConnection(self.chain)

    def abortConnection(self) -> None:
        self.loseConnection()


class FakeTLS:
    """Stands in for S2STLS: records which creators were asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, ...]] = []

    def server(self) -> str:
        self.asked.append(("server",))
        return "server-creator"

    def client(self, domain: str, direct_tls: bool = False) -> str:
        self.asked.append(("client", domain))
        return f"client-creator:{domain}"


@dataclass
class LocalUser:
    """A bound, available local client session that records what it is given."""

    jid: JID
    kind: str = "c2s"
    available: bool = True
    priority: int = 0
    presence: Any = None
    data: dict[str, Any] = field(default_factory=dict)
    received: list[domish.Element] = field(default_factory=list)

    def deliver(self, element: domish.Element) -> None:
        self.received.append(element)

    def close(self, condition: str, text: str | None = None) -> None:
        pass


class FakeDNS:
    """No SRV records anywhere (NXDOMAIN)."""

    def lookupService(self, name: str) -> Deferred[Any]:
        return fail(DNSNameError(name))


@dataclass
class Attempt:
    """One outgoing connection the manager made: the target and the scripted peer on it."""

    target: Target
    stream: XmppStream
    transport: PeerTransport
    peer: Peer


class Network:
    """A federation of ``falcot.com`` (and ``conference.falcot.com``) with a CA, a clock, a
    local user, a link manager whose connections are scripted peers, and incoming streams."""

    def __init__(self, dialback: bool = True, require_encryption: bool = True,
                 routes: dict[str, tuple[str, int]] | None = None, idle_timeout: float = 600.0,
                 setup_timeout: float = 60.0) -> None:
        self.clock = Clock()
        self.ca = TestCA()
        self.bus = HookBus()
        self.router = Router({LOCAL}, self.bus, lambda local, domain: True)
        self.muc = LocalUser(JID.make(None, f"conference.{LOCAL}"), kind="component")
        self.router.add_component(f"conference.{LOCAL}", self.muc)
        self.joe = LocalUser(JID.make("joe", LOCAL, "laptop"))
        self.router.bind(self.joe)
        store = TrustStore([self.ca.certificate])
        self.tls = FakeTLS()
        self.federation = Federation(
            self.router, self.bus, self.clock, b"s3cr3t",
            lambda chain, domain: check_peer(store, chain, domain, self.ca.now),
            self.tls, require_encryption=require_encryption, dialback=dialback)
        self.dns = FakeDNS()
        resolver = S2SResolver(routes if routes is not None else {REMOTE: ("192.0.2.7", 5269)}, self.dns)
        self.attempts: list[Attempt] = []
        self.refuse: list[Target] = []
        self.streams: set[XmppStream] = set()
        self.manager = LinkManager(self.federation, resolver, self.connect, idle_timeout=idle_timeout,
                                   setup_timeout=setup_timeout, streams=self.streams)
        self.bus.add("route/remote", self.manager.route_remote)
        self.peer_chain = self.valid_chain()

    # -- certificates --------------------------------------------------------------------------

    def valid_chain(self, domain: str = REMOTE) -> list[x509.Certificate]:
        return [self.ca.issue(dns=(domain,))[1]]

    def untrusted_chain(self, domain: str = REMOTE) -> list[x509.Certificate]:
        return [self_signed(domain)[1]]

    # -- outgoing ------------------------------------------------------------------------------

    def connect(self, target: Target, remote: str, factory: Factory) -> Deferred[Any]:
        if target in self.refuse:
            return fail(ConnectionRefusedError("refused"))
        stream = factory.buildProtocol(None)
        transport = PeerTransport(self.peer_chain, direct_tls=target.direct_tls)
        stream.makeConnection(transport)
        self.attempts.append(Attempt(target, stream, transport, Peer(stream, transport)))
        return succeed(stream)

    # -- incoming ------------------------------------------------------------------------------

    def incoming(self, chain: list[x509.Certificate] | None = None) -> tuple[Peer, IncomingSession]:
        """A peer connected to our s2s listener; its certificate is ``chain`` once TLS starts."""
        stream = XmppStream(lambda s: IncomingSession(self.federation, s), self.clock, namespace="jabber:server",
                            registry=self.streams)
        transport = PeerTransport(chain if chain is not None else self.valid_chain())
        stream.makeConnection(transport)
        assert isinstance(stream.session, IncomingSession)
        return Peer(stream, transport), stream.session

    def message(self, sender: str = "joe@falcot.com/laptop", to: str = "bob@example.org",
                body: str = "hello") -> domish.Element:
        message = domish.Element(("jabber:client", "message"))
        message["from"], message["to"], message["type"] = sender, to, "chat"
        message.addElement("body", content=body)
        return message

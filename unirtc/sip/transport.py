# -*- test-case-name: tests.protocol.test_sip_transport -*-
"""SIP over UDP, TCP and TLS (RFC 3261 §18): one core behind a datagram and a stream adapter.

Inbound, every request gets ``received``/``rport`` on its top Via (§18.2.1, RFC 3581), bad
messages get the parser's 400 (or silence when no response can be formed), and CRLF
keep-alives get their pong (RFC 5626 §4.4.1; STUN keep-alives on the UDP port, §4.4.2, get a
Binding response).  Outbound, :meth:`Transports.send` writes to a :class:`Hop`: over the flow
(open connection) it names, over an open connection to that address, over UDP, or over a new
TCP connection.  Each TCP/TLS connection is a *flow* with a token; the registrar stores the
token with the binding, and requests for that contact go back over the same connection, as
repro does with its flow tokens (RFC 5626 outbound).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol as TypingProtocol

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Factory, Protocol
from twisted.protocols.policies import TimeoutMixin

from unirtc.logging import get_logger
from unirtc.sockets import no_delay
from unirtc.sip.headers import Via, parse_via
from unirtc.sip.message import (
    KeepAlive,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    is_keepalive,
    parse,
)
from unirtc.sip.uri import SipURI
from unirtc.turn.responder import respond as stun_respond

log = get_logger("unirtc.sip.transport")

DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061, "WS": 80, "WSS": 443}  # WS: RFC 6455 §3
UDP_SIZE_LIMIT = 1300  # §18.1.1: larger requests should use a congestion-controlled transport
IDLE_TIMEOUT = 3605.0  # close silent connections (Kamailio's default tcp_connection_lifetime)


def _plain_ip(host: str) -> str:
    """Drop IPv6 brackets and the IPv4-mapped prefix a dual-stack socket reports."""
    host = host.strip("[]")
    if host.lower().startswith("::ffff:") and "." in host:
        return host[7:]
    return host


def _is_ipv6(host: str) -> bool:
    return ":" in host


@dataclass(frozen=True)
class Hop:
    """One end of a SIP hop: where a message came from, or where one should go.

    ``flow`` is the token of the TCP/TLS/WebSocket connection the message arrived on (or should
    leave on); None for UDP, and for stream hops that need a connection looked up or opened.
    """

    transport: str  # "UDP", "TCP", "TLS", or "WS"/"WSS" (RFC 7118, sip/websocket.py)
    host: str
    port: int
    flow: str | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def stamp_via(request: SipRequest, source: Hop) -> None:
    """§18.2.1 and RFC 3581 §4: note where the request really came from on its top Via."""
    top = request.headers.get_list("Via")[0]
    via = parse_via(top)
    changed = False
    if _plain_ip(via.host).lower() != source.host.lower() or via.has_rport:
        via.params["received"] = source.host
        changed = True
    if via.has_rport:
        via.params["rport"] = str(source.port)
        changed = True
    if changed:
        request.headers.pop_first("Via")
        request.headers.add("Via", str(via), first=True)


def via_hop(via: Via, flow: str | None = None) -> Hop:
    """§18.2.2: where responses for a request with this (stamped) top Via go.

    Over TCP/TLS, the flow the request came on; if it has closed, a connection to
    ``received`` and the sent-by port.  Over UDP, ``received`` and ``rport`` when present
    (and ``rport`` over TCP too, where it names the connection's source port).
    """
    transport = via.transport if via.transport in DEFAULT_PORTS else "UDP"
    host = _plain_ip(via.received or via.host)
    port = via.rport or via.port or DEFAULT_PORTS[transport]
    return Hop(transport, host, port, flow)


def uri_hop(uri: SipURI) -> Hop | None:
    """The hop for a URI with a numeric host (RFC 3263 §4 without DNS); None for names.

    Contacts and Record-Routes are nearly always IP literals; names would need NAPTR/SRV.
    A ``transport=ws``/``wss`` URI is None too: a browser's contact (an ``.invalid`` host, RFC
    7118 §5) is reachable only over the WebSocket it registered on, never by a new connection.
    """
    if (uri.transport or "").upper() in ("WS", "WSS"):
        return None
    host = _plain_ip(uri.maddr or uri.host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    transport = (uri.transport or "").upper()
    if uri.scheme == "sips" or transport == "TLS":
        transport = "TLS"
    elif transport not in ("TCP", "UDP"):
        transport = "UDP"
    return Hop(transport, host, uri.port or DEFAULT_PORTS[transport])


class Receiver(TypingProtocol):
    """The transaction layer above: gets every well-formed message with its source."""

    def receive(self, message: SipRequest | SipResponse, source: Hop) -> None: ...


class _DropLog:
    """Counts dropped input and logs the 1st, 2nd, 4th, 8th... so floods log a few lines."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, source: Hop, reason: str) -> None:
        self.count += 1
        if self.count & (self.count - 1) == 0:
            log.debug("SIP: dropped {count} message(s) so far; latest from {transport} {host} port "
                      "{port}: {reason}", count=self.count, transport=source.transport,
                      host=source.host, port=source.port, reason=reason)


class Transports:
    """Every SIP socket of the server: UDP ports, the flow table, outbound connections."""

    def __init__(self, receiver: Receiver, clock: Any, advertise: str,
                 connect_tcp: Callable[[str, int, ClientFactory], Any] | None = None) -> None:
        self.receiver = receiver
        self.clock = clock
        self.advertise = advertise
        self.connect_tcp = connect_tcp
        self.udp: list[SipDatagramProtocol] = []
        self.flows: dict[str, SipStreamProtocol] = {}
        self._by_address: dict[tuple[str, str, int], SipStreamProtocol] = {}
        self.listeners: list[tuple[str, str, int]] = []  # (transport, interface, port)
        self.dropped = _DropLog()

    # Inbound -----------------------------------------------------------------------------

    def deliver(self, data: bytes, source: Hop, stream: bool) -> SipResponse | None:
        """Parse one message and hand it up; returns the 400 owed if it was malformed."""
        try:
            message = parse(data, stream)
        except SipParseError as error:
            answer = error_response(error)
            self.dropped(source, f"{error.status} {error.reason}" + ("" if answer else " (unanswerable)"))
            return answer
        try:
            if isinstance(message, SipRequest):
                stamp_via(message, source)
            self.receiver.receive(message, source)
        except Exception:
            log.failure("SIP: handling a message from {host} port {port} failed",
                        host=source.host, port=source.port)
        return None

    # Outbound ----------------------------------------------------------------------------

    def local_address(self, transport: str, ipv6: bool = False) -> tuple[str, int]:
        """(host, port) for our Via and Record-Route on ``transport``: the listener's own
        address when it is bound to one, the advertised name when bound to a wildcard."""
        candidates = [(i, p) for t, i, p in self.listeners if t == transport]
        if not candidates:
            candidates = [(i, p) for _, i, p in self.listeners] or [("", DEFAULT_PORTS[transport])]
        preferred = [c for c in candidates if _is_ipv6(c[0]) == ipv6] or candidates
        interface, port = preferred[0]
        if interface in ("", "0.0.0.0", "::"):
            return self.advertise, port
        return (f"[{interface}]" if _is_ipv6(interface) else interface), port

    def is_local(self, host: str, port: int | None) -> bool:
        """True if ``host:port`` names one of our listeners (used for Route and loop checks)."""
        host = _plain_ip(host).lower()
        ports = {p for _, _, p in self.listeners}
        if port is not None and port not in ports:
            return False
        if port is None and not ports & {5060, 5061}:
            return False
        return host == self.advertise.lower() or any(host == _plain_ip(i).lower()
                                                     for _, i, _ in self.listeners if i)

    def choose(self, hop: Hop, size: int) -> Hop:
        """The hop to really use: an open flow if there is one, and TCP for a large request.

        §18.1.1 says a request over 1300 bytes must not go over UDP.  We switch only when a
        connection to that address is already open: a UA registered over UDP often does not
        listen on TCP, and a failed connection would lose the call, so otherwise the datagram
        is sent anyway (the IP layer fragments it).
        """
        if hop.flow is not None and hop.flow in self.flows:
            return hop
        connection = self._by_address.get((hop.transport, hop.host, hop.port))
        if connection is None and hop.transport == "UDP" and size > UDP_SIZE_LIMIT:
            connection = self._by_address.get(("TCP", hop.host, hop.port))
        if connection is not None:
            return Hop(connection.transport_name, hop.host, hop.port, connection.token)
        return replace(hop, flow=None)

    def send(self, data: bytes, hop: Hop, on_error: Callable[[], None] | None = None) -> None:
        """Write ``data`` to ``hop``; ``on_error`` runs (maybe later) if it cannot be sent."""
        fail = on_error or (lambda: None)
        if hop.flow is not None and hop.flow in self.flows:
            self.flows[hop.flow].send(data)
            return
        if hop.transport == "UDP":
            self._send_udp(data, hop, fail)
            return
        connection = self._by_address.get((hop.transport, hop.host, hop.port))
        if connection is not None:
            connection.send(data)
        elif hop.transport == "TCP" and self.connect_tcp is not None:
            factory = _ConnectingFactory(self, "TCP")
            factory.pending.append((data, fail))
            self.connect_tcp(hop.host, hop.port, factory)
        else:
            # No outbound TLS: a UA reached over TLS keeps its flow open (RFC 5626), and
            # there is no name to verify a certificate against for an IP contact.
            self.dropped(hop, "no open connection for this hop")
            fail()

    def _send_udp(self, data: bytes, hop: Hop, fail: Callable[[], None]) -> None:
        ports = [p for p in self.udp if p.transport is not None]
        ipv6 = _is_ipv6(hop.host)
        port = next((p for p in ports if p.ipv6 == ipv6), None)
        host = hop.host
        if port is None and not ipv6:
            port = next((p for p in ports if p.ipv6), None)  # dual-stack socket: v4-mapped
            host = f"::ffff:{hop.host}"
        if port is None:
            self.dropped(hop, "no UDP socket for this address family")
            fail()
            return
        try:
            port.transport.write(data, (host, hop.port))
        except (OSError, MessageLengthError) as e:
            self.dropped(hop, f"cannot send: {e}")
            fail()

    # Flow table --------------------------------------------------------------------------

    def opened(self, connection: SipStreamProtocol) -> None:
        self.flows[connection.token] = connection
        self._by_address[(connection.transport_name, *connection.peer)] = connection

    def closed(self, connection: SipStreamProtocol) -> None:
        self.flows.pop(connection.token, None)
        key = (connection.transport_name, *connection.peer)
        if self._by_address.get(key) is connection:
            del self._by_address[key]


class SipDatagramProtocol(DatagramProtocol):
    """SIP over UDP: one datagram, one message (§18.3)."""

    def __init__(self, transports: Transports, ipv6: bool = False) -> None:
        self.transports = transports
        self.ipv6 = ipv6

    def startProtocol(self) -> None:
        self.transports.udp.append(self)

    def stopProtocol(self) -> None:
        if self in self.transports.udp:
            self.transports.udp.remove(self)

    def datagramReceived(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = Hop("UDP", _plain_ip(str(addr[0])), int(addr[1]))
        if data[:1] in (b"\x00", b"\x01"):  # RFC 5626 §4.4.2: STUN keep-alive on the SIP port
            try:
                answer = stun_respond(data, addr)
            except ValueError as e:
                self.transports.dropped(source, f"not STUN: {e}")
                return
            if answer is not None:
                self._write(answer, addr, source)
            return
        if is_keepalive(data):
            return  # a NAT ping; nothing to answer over UDP
        reply = self.transports.deliver(data, source, stream=False)
        if reply is not None:
            self._write(bytes(reply), addr, source)

    def _write(self, data: bytes, addr: tuple[Any, ...], source: Hop) -> None:
        try:
            self.transport.write(data, addr[:2])
        except (OSError, MessageLengthError) as e:
            self.transports.dropped(source, f"cannot answer: {e}")


class SipStreamProtocol(Protocol, TimeoutMixin):
    """SIP over one TCP or TLS connection: Content-Length framing, CRLF pongs, a flow token."""

    def __init__(self, transports: Transports, transport_name: str) -> None:
        self.transports = transports
        self.transport_name = transport_name
        self.token = f"{transport_name.lower()}-{secrets.token_hex(8)}"
        self.framer = StreamFramer()
        self.peer: tuple[str, int] = ("", 0)
        self.pending: list[bytes] = []
        self.callLater = transports.clock.callLater  # TimeoutMixin's timer, on our clock

    def connectionMade(self) -> None:
        no_delay(self)
        address = self.transport.getPeer()
        self.peer = (_plain_ip(address.host), address.port)
        self.transports.opened(self)
        self.setTimeout(IDLE_TIMEOUT)
        for data in self.pending:
            self.transport.write(data)
        self.pending.clear()

    def send(self, data: bytes) -> None:
        if self.transport is None or not self.connected:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        source = Hop(self.transport_name, *self.peer, flow=self.token)
        try:
            events = self.framer.feed(data)
        except SipParseError as error:
            # The stream cannot be resynchronised without a frame boundary: hang up.
            self.transports.dropped(source, f"framing: {error.reason}; closing the connection")
            self.transport.loseConnection()
            return
        for event in events:
            if isinstance(event, KeepAlive):
                self.transport.write(KeepAlive.PONG)
                continue
            reply = self.transports.deliver(event, source, stream=True)
            if reply is not None:
                self.transport.write(bytes(reply))

    def timeoutConnection(self) -> None:
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        self.transports.closed(self)


class SipStreamFactory(Factory):
    """Builds a :class:`SipStreamProtocol` per accepted TCP (or, wrapped, TLS) connection."""

    def __init__(self, transports: Transports, transport_name: str) -> None:
        self.transports = transports
        self.transport_name = transport_name

    def buildProtocol(self, addr: Any) -> SipStreamProtocol:
        protocol = SipStreamProtocol(self.transports, self.transport_name)
        protocol.factory = self
        return protocol


class _ConnectingFactory(ClientFactory):
    """One outbound TCP connection; what was queued for it fails if it never connects."""

    def __init__(self, transports: Transports, transport_name: str) -> None:
        self.transports = transports
        self.transport_name = transport_name
        self.pending: list[tuple[bytes, Callable[[], None]]] = []

    def buildProtocol(self, addr: Any) -> SipStreamProtocol:
        protocol = SipStreamProtocol(self.transports, self.transport_name)
        protocol.factory = self
        protocol.pending = [data for data, _ in self.pending]
        self.pending.clear()
        return protocol

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        for _, fail in self.pending:
            fail()
        self.pending.clear()

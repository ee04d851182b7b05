# -*- test-case-name: tests.protocol.test_websocket -*-
"""RFC 6455 WebSocket endpoints on the [web] listener: an Origin allow-list, a subprotocol per
application (``xmpp`` RFC 7395, ``sip`` RFC 7118), and bounded messages.

Applications are written against Twisted's own WebSocket interface
(``twisted.web.websocket``): a factory with ``buildProtocol(request)`` returning a
``WebSocketProtocol`` (``negotiationStarted(transport)``, ``negotiationFinished()``,
``textMessageReceived``, ``bytesMessageReceived``, ``pongReceived``, ``connectionLost``), and
a transport with ``sendTextMessage``, ``sendBytesMessage``, ``ping`` and ``loseConnection(code)``.

Another subprotocol (SIP, RFC 7118) joins the same listener as XMPP does in xmpp/service.py::

    endpoint = WebSocketEndpoint({"sip": factory}, OriginPolicy(settings.web.origins),
                                 max_message=65535)
    context.items.add("http-path", ("sip-ws", endpoint))     # wss://host:port/sip-ws

(a plugin uses ``module.add_item``); to share a path, add to an endpoint's ``protocols`` dict.

The endpoint is ours rather than Twisted 26.10's ``WebSocketResource`` because that one accepts
every upgrade without a ``Sec-WebSocket-Protocol`` answer (a browser that asked for ``xmpp`` or
``sip`` then fails the connection, RFC 6455 §4.1), cannot refuse an Origin before switching
protocols (RFC 6455 §10.2), and reassembles fragmented messages with no bound, so one client
could make the server buffer without end. It keeps Twisted's wire library (wsproto, the
``twisted[websocket]`` extra) and Twisted's HTTP channel upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.websocket import WebSocketProtocol, WebSocketServerFactory
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request as UpgradeRequest,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from unirtc.config import normalize_origin
from unirtc.logging import get_logger

log = get_logger("unirtc.web.websocket")

DEFAULT_MAX_MESSAGE = 262144
FORBIDDEN = 403
BAD_REQUEST = 400
UPGRADE_REQUIRED = 426


class OriginPolicy:
    """Which web pages may open a WebSocket here, by the Origin header their browser sends.

    A request without Origin is not from a browser page (RFC 6455 §10.2: the header protects
    browser users from other sites' scripts; any other client can send what it likes), so it is
    allowed. ``"*"`` in the list allows every Origin.
    """

    def __init__(self, allowed: tuple[str, ...] | list[str]) -> None:
        self.any = "*" in allowed
        self.allowed = frozenset(o for o in (normalize_origin(a) for a in allowed if a != "*") if o)

    def allows(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return self.any or normalize_origin(origin) in self.allowed


def _refuse(request: Request, code: int, text: str, **headers: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    for name, value in headers.items():
        request.setHeader(name.replace("_", "-").encode("ascii"), value.encode("ascii"))
    return text.encode("utf-8") + b"\n"


class WebSocketEndpoint(Resource):
    """One path on the web listener serving WebSocket upgrades for the given subprotocols.

    ``protocols`` maps a subprotocol name to a Twisted ``WebSocketServerFactory``; the first
    subprotocol in the client's ``Sec-WebSocket-Protocol`` list that is served here wins. A
    refused Origin gets 403, a request offering none of the subprotocols 400, a plain GET 426,
    all before any upgrade. ``max_message`` bounds one message (characters for text, bytes for
    binary) including its fragments.
    """

    isLeaf = True

    def __init__(self, protocols: Mapping[str, WebSocketServerFactory[WebSocketProtocol]], origins: OriginPolicy,
                 *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        super().__init__()
        if not protocols:
            raise ValueError("a WebSocket endpoint needs at least one subprotocol")
        self.protocols = dict(protocols)
        self.origins = origins
        self.max_message = max_message

    def render_GET(self, request: Request) -> bytes | int:
        origin = request.getHeader(b"origin")
        origin_text = origin.decode("latin-1") if origin is not None else None
        if not self.origins.allows(origin_text):
            log.info("WebSocket from Origin {origin} refused (not in [web] origins)", origin=origin_text)
            return _refuse(request, FORBIDDEN, "this Origin may not open WebSockets here")
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
        except RemoteProtocolError as e:
            if request.getHeader(b"upgrade") is None:
                return _refuse(request, UPGRADE_REQUIRED, "this is a WebSocket endpoint",
                               upgrade="websocket", sec_websocket_version="13")
            return _refuse(request, BAD_REQUEST, f"bad WebSocket upgrade: {e}", sec_websocket_version="13")
        upgrade = next((e for e in handshake.events() if isinstance(e, UpgradeRequest)), None)
        offered = upgrade.subprotocols if upgrade is not None else []
        chosen = next((name for name in offered if name in self.protocols), None)
        if chosen is None:
            return _refuse(request, BAD_REQUEST, "offer one of these WebSocket subprotocols: "
                           + ", ".join(self.protocols))
        application = self.protocols[chosen].buildProtocol(request)
        accept = handshake.send(AcceptConnection(subprotocol=chosen))
        assert handshake.connection is not None
        channel = request.channel
        channel.transport.write(accept)  # the 101 goes out before anything the application says
        wire = WebSocketWire(handshake.connection, application, chosen, self.max_message)
        # Twisted's own hook (twisted.web.websocket uses it): the channel's bytes go to the wire.
        channel._protocolUpgradeForWebsockets(wire)
        application.negotiationFinished()
        return NOT_DONE_YET


class WebSocketWire(Protocol):
    """RFC 6455 framing between the HTTP channel's transport and one application protocol.

    It is the application's ``WebSocketTransport``; besides Twisted's methods it offers
    ``subprotocol``, ``secure``, ``getPeer()``, ``getHost()``, ``getHandle()`` (the pyOpenSSL
    connection, for channel binding), ``pauseProducing()``/``resumeProducing()`` and
    ``abortConnection()``. An application that defines ``messageTooBig()`` is told of an
    oversized message and closes the connection itself; otherwise the wire closes it with 1009.
    """

    def __init__(self, connection: Connection, application: WebSocketProtocol, subprotocol: str,
                 max_message: int) -> None:
        self.connection = connection
        self.application = application
        self.subprotocol = subprotocol
        self.max_message = max_message
        self._parts: list[Any] = []
        self._size = 0
        self._discarding = False  # the rest of an oversized message is dropped as it arrives
        self._done = False

    # -- from the network -------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.application.negotiationStarted(self)

    def dataReceived(self, data: bytes) -> None:
        if self._done or self.connection.state is ConnectionState.CLOSED:
            return
        self.connection.receive_data(data)
        for event in self.connection.events():
            if self._done:
                return
            if isinstance(event, (TextMessage, BytesMessage)):
                self._message_part(event)
            elif isinstance(event, Ping):
                self._send(event.response())
            elif isinstance(event, Pong):
                self.application.pongReceived(event.payload)
            elif isinstance(event, CloseConnection):
                # The peer's close (or wsproto's verdict on a protocol error, 1002/1007): answer it
                # and drop the TCP connection, which ends the application's session.
                if self.connection.state is not ConnectionState.CLOSED:
                    self._send(event.response())
                self._finish()

    def _message_part(self, event: TextMessage | BytesMessage) -> None:
        if not self._discarding:
            self._size += len(event.data)
            if self._size > self.max_message:
                self._parts, self._discarding = [], True
                too_big = getattr(self.application, "messageTooBig", None)
                if too_big is not None:
                    too_big()
                else:
                    self.loseConnection(CloseReason.MESSAGE_TOO_BIG, "message too big")
            else:
                self._parts.append(event.data)
        if event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            if self._discarding:
                self._discarding = False
            elif isinstance(event, TextMessage):
                self.application.textMessageReceived("".join(parts))
            else:
                self.application.bytesMessageReceived(b"".join(parts))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._done = True
        self._parts = []
        self.application.connectionLost(reason)

    # -- WebSocketTransport -------------------------------------------------------------------

    def sendTextMessage(self, text: str) -> None:
        self._send(TextMessage(text))

    def sendBytesMessage(self, data: bytes) -> None:
        self._send(BytesMessage(data))

    def ping(self, payload: bytes = b"") -> None:
        self._send(Ping(payload))

    def loseConnection(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        """Send a Close frame with ``code`` and close the TCP connection (the server closes
        first, RFC 6455 §7.1.1)."""
        if self.connection.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self._send(CloseConnection(code, reason))
        self._finish()

    def attachProducer(self, producer: Any) -> None:
        self.transport.registerProducer(producer, True)

    def detachProducer(self) -> None:
        self.transport.unregisterProducer()

    # -- what the application may want from the connection underneath -----------------------

    @property
    def secure(self) -> bool:
        return ISSLTransport.providedBy(self.transport)

    def getHandle(self) -> Any:
        return self.transport.getHandle()

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def abortConnection(self) -> None:
        self._done = True
        self.transport.abortConnection()

    # -- helpers --------------------------------------------------------------------------------

    def _send(self, event: Any) -> None:
        """Write one event; silently nothing once the connection is closing (a late stanza)."""
        if self._done:
            return
        closing = isinstance(event, CloseConnection)
        if self.connection.state is not ConnectionState.OPEN and not (
                closing and self.connection.state is ConnectionState.REMOTE_CLOSING):
            return
        self.transport.write(self.connection.send(event))

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self.transport.loseConnection()

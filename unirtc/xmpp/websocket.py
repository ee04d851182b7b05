# -*- test-case-name: tests.protocol.test_xmpp_websocket -*-
"""XMPP over WebSocket (RFC 7395, subprotocol ``xmpp``): the c2s sessions of ``c2s.py`` on a
WebSocket of ``unirtc.web.websocket`` instead of a TCP stream.

``WebSocketXmppStream`` is an ``XmppStream`` whose bytes are WebSocket messages: it keeps the
stream's event queue (a session's pending Deferred holds later messages, in order), timers and
shutdown, and swaps the framing (``framing.py``): ``<open/>``/``<close/>`` for the stream
header and footer, one element per message, WebSocket pings for whitespace keepalives. There
is no STARTTLS: over WSS the session is encrypted from the start, and SCRAM-PLUS binds to the
TLS connection under the HTTP channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.web.server import Request
from twisted.words.xish import domish
from wsproto.frame_protocol import CloseReason

from unirtc.logging import get_logger
from unirtc.sockets import is_loopback
from unirtc.xmpp import framing
from unirtc.xmpp.errors import StreamError
from unirtc.xmpp.parser import StreamClosed, StreamOpened
from unirtc.xmpp.stream import CLOSE_TIMEOUT, KEEPALIVE_INTERVAL, Session, XmppStream, new_stream_id

log = get_logger("unirtc.xmpp.websocket")

SUBPROTOCOL = "xmpp"


class WebSocketXmppStream(XmppStream):
    """One RFC 7395 connection; a Twisted ``WebSocketProtocol`` driving a c2s session.

    ``transport`` is the ``WebSocketWire``. ``secure`` is true over WSS, and over plain WS from
    loopback only (a TLS-terminating proxy on the same host); elsewhere SASL is refused as on
    a TCP stream without TLS.
    """

    def __init__(self, make_session: Callable[[XmppStream], Session], clock: Any, *,
                 max_stanza: int = 262144, keepalive: float = KEEPALIVE_INTERVAL,
                 registry: set[XmppStream] | None = None) -> None:
        super().__init__(make_session, clock, max_stanza=max_stanza, keepalive=keepalive,
                         registry=registry)
        self.opened = False  # an <open/> started the current stream (none yet, or restarted)
        self._close_code = int(CloseReason.NORMAL_CLOSURE)

    # -- WebSocketProtocol ---------------------------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.connectionMade()

    def textMessageReceived(self, message: str) -> None:
        if self.closing:
            return
        try:
            event = framing.parse_message(message, self.max_stanza)
        except StreamError as error:
            self._queue.append(error)
        else:
            if event is not None:
                self._queue.append(self._in_order(event))
        self._drain()

    def _in_order(self, event: Any) -> Any:
        """RFC 7395 §3.4: a stream starts with ``<open/>``, and only once until a restart."""
        if isinstance(event, StreamOpened):
            if self.opened:
                return StreamError("bad-format", "<open/> on an open stream")
            self.opened = True
        elif not self.opened and not isinstance(event, StreamClosed):
            return StreamError("bad-format", "open the stream with <open/> first")
        return event

    def bytesMessageReceived(self, data: bytes) -> None:
        """RFC 7395 §3.2: XMPP messages are text; a binary one ends the connection (1003)."""
        if self.closing:
            return
        self._close_code = int(CloseReason.UNSUPPORTED_DATA)
        self._queue.append(StreamError("bad-format", "XMPP over WebSocket is sent in text messages"))
        self._drain()

    def messageTooBig(self) -> None:
        """Called by the wire for a message over its bound: the stanza size limit's error."""
        self._close_code = int(CloseReason.MESSAGE_TOO_BIG)
        self.fail("policy-violation", f"message exceeds {self.max_stanza} bytes")

    def pongReceived(self, payload: bytes) -> None:
        pass

    # -- writing: messages instead of bytes ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.connected and self.transport is not None:
            self.transport.sendTextMessage(data.decode("utf-8"))
            self._quiet = False

    def send(self, element: domish.Element) -> None:
        if not self.closing:
            self.write(framing.element_message(element).encode("utf-8"))

    def open(self, attrs: dict[str, str], extra_namespaces: dict[str, str] | None = None) -> str:
        """Answer ``<open/>`` with ours and a fresh stream id (RFC 7395 §3.4)."""
        self.stream_id = new_stream_id()
        self.header_sent = True
        self.write(framing.open_message({**attrs, "id": self.stream_id}).encode("utf-8"))
        return self.stream_id

    def restart(self) -> None:
        """After SASL success the client sends a new ``<open/>`` (RFC 7395 §3.5)."""
        self._queue.clear()
        self.header_sent = False
        self.opened = False

    def fail(self, condition: str, text: str | None = None) -> None:
        """The stream error as a message, then ``<close/>`` and the closing handshake (§3.6.1)."""
        if self.closing:
            return
        if not self.header_sent:
            self.open({"version": "1.0"})
        log.info("Stream error {condition} to {host} (WebSocket): {text}", condition=condition,
                 host=self.peer_host, text=text or "")
        self.write(framing.error_message(condition, text).encode("utf-8"))
        self.close()

    def close(self) -> None:
        """``<close/>``, then the WebSocket closing handshake (RFC 7395 §3.6)."""
        if self.closing:
            return
        if self.header_sent:
            self.write(framing.CLOSE.encode("utf-8"))
        self.closing = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.loseConnection(self._close_code)
            self._close_call = self.clock.callLater(CLOSE_TIMEOUT, self._abort)

    def _send_keepalive(self) -> None:
        """RFC 7395 §3.7: no whitespace between messages; a WebSocket ping keeps NATs open."""
        if self.closing:
            return
        if self._quiet and self.header_sent:
            self.transport.ping(b"")
        self._schedule_keepalive()

    # -- what the session asks of its stream -------------------------------------------------------

    @property
    def secure(self) -> bool:
        if self.transport is None:
            return False
        return bool(self.transport.secure) or is_loopback(self.peer_host)

    def tls_connection(self) -> Any:
        """The TLS connection under the HTTP channel (SCRAM-PLUS binds to it); None on plain WS."""
        if self.transport is None or not self.transport.secure:
            return None
        return self.transport.getHandle()

    def start_tls(self, creator: Any) -> None:
        raise StreamError("unsupported-feature", "no STARTTLS over WebSocket")


class XmppWebSocketFactory:
    """Twisted's ``WebSocketServerFactory`` for the ``xmpp`` subprotocol: one stream per upgrade,
    with a session from ``make_session(stream)``, registered in ``streams`` for shutdown."""

    def __init__(self, make_session: Callable[[XmppStream], Session], clock: Any, streams: set[XmppStream],
                 max_stanza: int = 262144) -> None:
        self.make_session = make_session
        self.clock = clock
        self.streams = streams
        self.max_stanza = max_stanza

    def buildProtocol(self, request: Request) -> WebSocketXmppStream:
        return WebSocketXmppStream(self.make_session, self.clock, max_stanza=self.max_stanza,
                                   registry=self.streams)

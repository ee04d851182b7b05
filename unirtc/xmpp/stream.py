# -*- test-case-name: tests.protocol.test_c2s -*-
"""The one XMPP ``Protocol``: bytes to the restricted parser, stream events to a session object.

``XmppStream`` knows nothing about clients, components or servers. It owns the parser, writes
bytes, sends whitespace keepalives when it has been quiet, and turns any ``StreamError`` into
``<stream:error/>``, ``</stream:stream>`` and a closed connection (RFC 6120 §4.9). A session
(c2s.py, component.py) reacts to the events; when it must wait for something (a directory
lookup), it returns a Deferred and the stream holds later events, and stops reading from the
socket, until it fires, so a session sees its stanzas in order and one at a time.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol as TypingProtocol
from xml.sax.saxutils import quoteattr

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.sockets import no_delay
from unirtc.xmpp.errors import NS_STREAMS, StreamError, stream_error_xml
from unirtc.xmpp.parser import Stanza, StreamClosed, StreamEvent, StreamOpened, StreamParser
from unirtc.xmpp.stanzas import NS_CLIENT, rebase, to_bytes

log = get_logger("unirtc.xmpp.stream")

KEEPALIVE_INTERVAL = 240.0  # below the usual 300 s NAT and load-balancer idle limits
CLOSE_TIMEOUT = 5.0  # how long to wait for the peer's </stream:stream> before dropping it


class Session(TypingProtocol):
    """What a stream drives. A method may return a Deferred to hold the following events."""

    def stream_opened(self, event: StreamOpened) -> Deferred[Any] | None: ...

    def stanza_received(self, element: domish.Element) -> Deferred[Any] | None: ...

    def stream_closed(self) -> None: ...

    def connection_lost(self) -> None: ...


def new_stream_id() -> str:
    """An unguessable stream id (RFC 6120 §4.7.3; XEP-0114 hashes it with the secret)."""
    return os.urandom(12).hex()


class XmppStream(Protocol):
    """One XMPP connection: ``make_session(stream)`` is called once the connection is made."""

    def __init__(
        self,
        make_session: Callable[[XmppStream], Session],
        clock: Any,
        *,
        namespace: str = "jabber:client",
        max_stanza: int = 262144,
        keepalive: float = KEEPALIVE_INTERVAL,
        registry: set[XmppStream] | None = None,
    ) -> None:
        self.make_session = make_session
        self.registry = registry
        self.clock = clock
        self.namespace = namespace
        self.max_stanza = max_stanza
        self.keepalive = keepalive
        self.session: Session | None = None
        self.stream_id = ""
        self.header_sent = False
        self.closing = False
        self.connected = False
        self._parser = StreamParser(max_stanza, namespace)
        self._queue: deque[StreamEvent | StreamError] = deque()
        self._waiting = False
        self._keepalive_call: IDelayedCall | None = None
        self._quiet = True
        self._close_call: IDelayedCall | None = None

    # -- Twisted side ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        no_delay(self)
        if self.registry is not None:
            self.registry.add(self)
        self.session = self.make_session(self)
        self._schedule_keepalive()

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return  # after our stream error or close, nothing the peer says matters
        try:
            self._queue.extend(self._parser.feed(data))
        except StreamError as error:
            # What came before the bad input still counts (it may be a <starttls/> whose
            # restart makes the rest moot); the error takes effect in its turn.
            self._queue.extend(error.events)
            self._queue.append(error)
        self._drain()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connected = False
        self.closing = True
        self._queue.clear()
        if self.registry is not None:
            self.registry.discard(self)
        for call in (self._keepalive_call, self._close_call):
            if call is not None and call.active():
                call.cancel()
        if self.session is not None:
            session, self.session = self.session, None
            session.connection_lost()

    # -- event dispatch ----------------------------------------------------------------------

    def _drain(self) -> None:
        while self._queue and not self._waiting and not self.closing and self.session is not None:
            event = self._queue.popleft()
            try:
                result = self._dispatch(event)
            except StreamError as error:
                self.fail(error.condition, error.text)
                return
            except Exception:
                log.failure("Unexpected error handling a stream event")
                self.fail("internal-server-error")
                return
            if isinstance(result, Deferred):
                self._wait_for(result)

    def _dispatch(self, event: StreamEvent | StreamError) -> Deferred[Any] | None:
        assert self.session is not None
        if isinstance(event, StreamError):
            raise event
        if isinstance(event, Stanza):
            element = event.element
            if self.namespace != NS_CLIENT:
                rebase(element)  # sessions and the router only ever see jabber:client
            return self.session.stanza_received(element)
        if isinstance(event, StreamOpened):
            return self.session.stream_opened(event)
        if isinstance(event, StreamClosed):
            self.session.stream_closed()
        return None

    def _wait_for(self, result: Deferred[Any]) -> None:
        """Hold later events (and the socket) until the session's Deferred fires."""
        self._waiting = True
        state = {"synchronous": True, "paused": False}

        def resume(outcome: object) -> None:
            self._waiting = False
            if isinstance(outcome, Failure):
                if outcome.check(StreamError):
                    self.fail(outcome.value.condition, outcome.value.text)
                else:
                    log.failure("Unexpected error in a session", outcome)
                    self.fail("internal-server-error")
                return
            if state["paused"] and not self.closing:
                self.transport.resumeProducing()
            if not state["synchronous"]:
                self._drain()

        result.addBoth(resume)
        state["synchronous"] = False
        if self._waiting and not self.closing and hasattr(self.transport, "pauseProducing"):
            self.transport.pauseProducing()
            state["paused"] = True

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.connected and self.transport is not None:
            self.transport.write(data)
            self._quiet = False

    def send(self, element: domish.Element) -> None:
        """Write one stanza or nonza; stanzas go out with the stream's own default namespace."""
        if not self.closing:
            self.write(to_bytes(element))

    def open(self, attrs: dict[str, str], extra_namespaces: dict[str, str] | None = None) -> str:
        """Send our stream header with a fresh id (RFC 6120 §4.7) and return the id."""
        self.stream_id = new_stream_id()
        parts = [
            "<?xml version='1.0'?><stream:stream",
            f" xmlns={quoteattr(self.namespace)} xmlns:stream='{NS_STREAMS}'",
        ]
        for prefix, uri in (extra_namespaces or {}).items():
            parts.append(f" xmlns:{prefix}={quoteattr(uri)}")
        parts.append(f" id='{self.stream_id}'")
        for key, value in attrs.items():
            parts.append(f" {key}={quoteattr(value)}")
        parts.append(">")
        self.header_sent = True
        self.write("".join(parts).encode("utf-8"))
        return self.stream_id

    def restart(self) -> None:
        """Expect a new stream header (after STARTTLS or SASL success, RFC 6120 §5.4.3.3, §6.4.6).

        Anything the peer sent after the element that ended the old stream is discarded: it
        was sent before our answer could have been read (the STARTTLS injection attack).
        """
        self._parser = StreamParser(self.max_stanza, self.namespace)
        self._queue.clear()
        self.header_sent = False

    def fail(self, condition: str, text: str | None = None) -> None:
        """Send a stream error and close (RFC 6120 §4.9.1.1); safe to call more than once."""
        if self.closing:
            return
        if not self.header_sent:
            self.open({"version": "1.0"})
        log.info("Stream error {condition} to {host}: {text}", condition=condition, host=self.peer_host,
                 text=text or "")
        self.write(stream_error_xml(condition, text))
        self.close()

    def close(self) -> None:
        """Close our stream and the connection; the peer gets ``CLOSE_TIMEOUT`` to answer."""
        if self.closing:
            return
        if self.header_sent:
            self.write(b"</stream:stream>")
        self.closing = True
        self._queue.clear()
        if self.transport is not None:
            self.transport.loseConnection()
            self._close_call = self.clock.callLater(CLOSE_TIMEOUT, self._abort)

    def _abort(self) -> None:
        if self.connected and hasattr(self.transport, "abortConnection"):
            self.transport.abortConnection()

    def _schedule_keepalive(self) -> None:
        """RFC 6120 §4.6.1: a space between stanzas keeps NATs open and finds dead peers.

        A flag, not a timer reset per write: a stream quiet for one whole interval gets a space,
        so the gap between writes stays under two intervals at the cost of one timer per stream.
        """
        if self.keepalive > 0 and self.connected:
            self._quiet = True
            self._keepalive_call = self.clock.callLater(self.keepalive, self._send_keepalive)

    def _send_keepalive(self) -> None:
        if self.closing:
            return
        if self._quiet and self.header_sent:
            self.write(b" ")
        self._schedule_keepalive()

    # -- TLS -----------------------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        return self.transport is not None and ISSLTransport.providedBy(self.transport)

    def start_tls(self, creator: Any) -> None:
        """Switch to TLS as the server side; the peer then opens a new stream."""
        self.transport.startTLS(creator)
        self.restart()

    def tls_connection(self) -> Any:
        """The pyOpenSSL ``Connection`` under this stream, or None (used for channel binding)."""
        if not self.secure:
            return None
        return self.transport.getHandle()

    @property
    def peer_host(self) -> str:
        peer = self.transport.getPeer() if self.transport is not None else None
        return getattr(peer, "host", "") or ""

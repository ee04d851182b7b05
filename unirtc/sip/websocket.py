# -*- test-case-name: tests.protocol.test_sip_websocket -*-
"""SIP over WebSocket (RFC 7118, subprotocol ``sip``): browser phones on the [web] listener.

Each WebSocket message is one SIP message (§4, with UDP's framing: Content-Length may be
absent), handed to the same transports and core as UDP, TCP and TLS.  Each connection is a
*flow* (RFC 5626) in the ``Transports`` flow table, with a ``ws-``/``wss-`` token: the registrar
stores the token with the binding, so a call to the browser's ``.invalid`` Contact goes back
over the connection it registered on (§5), and the proxy's Record-Route carries the token.
Via ``WS``/``WSS`` and the transport names feed the proxy's double Record-Route when a dialog
crosses from a WebSocket to UDP/TCP/TLS.  When the connection ends, the bindings registered
over it end too: a browser tab that closed cannot be called.  Quiet connections are pinged, so
NATs and proxies keep them, and closed when pings go unanswered (a laptop that went to sleep).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from twisted.web.server import Request
from wsproto.frame_protocol import CloseReason

from unirtc.logging import get_logger
from unirtc.sip.digest import DigestParseError, parse_credentials
from unirtc.sip.message import SipParseError, SipResponse, is_keepalive, parse
from unirtc.sip.transport import Hop, Transports
from unirtc.sockets import is_loopback

log = get_logger("unirtc.sip.websocket")

SUBPROTOCOL = "sip"
MAX_MESSAGE = 65535  # the SIP parser's own bound (message.MAX_MESSAGE)
POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
# A WebSocket ping after this long without traffic keeps NATs and reverse proxies (nginx closes
# after 60 s by default) from dropping a quiet phone; browsers answer pings by themselves.
KEEPALIVE_INTERVAL = 45.0
# A peer silent this long has not answered two pings: the tab or its network is gone, and its
# bindings with it.
DEAD_AFTER = 3 * KEEPALIVE_INTERVAL

AOR = tuple[str, str]


def _plain_host(host: str) -> str:
    host = host.strip("[]")
    return host[7:] if host.lower().startswith("::ffff:") and "." in host else host


def md5_challenges_only(data: bytes) -> bytes:
    """A 401/407 for a browser with only its MD5 challenges (when it has any).

    Browser SIP stacks implement MD5 digest only, and read one challenge header: JsSIP the
    last one it parsed, SIP.js the first.  The authenticator offers MD5 first and SHA-256 after
    it (RFC 8760), so JsSIP would pick SHA-256 and give up; over a WebSocket, MD5 alone suits
    both (and the digest travels inside TLS there).
    """
    if not data.startswith((b"SIP/2.0 401 ", b"SIP/2.0 407 ")):
        return data
    try:
        response = parse(data)
    except SipParseError:
        return data
    if not isinstance(response, SipResponse):
        return data
    name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    challenges = response.headers.get_all(name)
    md5 = []
    for value in challenges:
        try:
            algorithm = parse_credentials(value).params.get("algorithm", "MD5")
        except DigestParseError:
            continue
        if algorithm.upper() == "MD5":
            md5.append(value)
    if not md5 or len(md5) == len(challenges):
        return data
    response.headers.remove(name)
    for value in md5:
        response.headers.add(name, value)
    return bytes(response)


class FlowBindings:
    """Which accounts registered over which WebSocket flow, so a closed flow's bindings go.

    It watches the registrar's changes (``Registrar.on_change``, chained with any callback
    already there) rather than scanning every binding when a connection closes: a server
    holding thousands of browser registrations closes connections often.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._aors: dict[str, set[AOR]] = {}

    def watch(self, registrar: Any) -> None:
        previous: Callable[[AOR, list[Any]], None] | None = registrar.on_change

        def on_change(aor: AOR, bindings: list[Any]) -> None:
            self.changed(aor, bindings)
            if previous is not None:
                previous(aor, bindings)

        registrar.on_change = on_change

    def changed(self, aor: AOR, bindings: list[Any]) -> None:
        for binding in bindings:
            if binding.flow is not None and binding.flow.startswith(("ws-", "wss-")):
                self._aors.setdefault(binding.flow, set()).add(aor)

    def closed(self, flow: str) -> int:
        """Remove every binding registered over ``flow``; returns how many went."""
        removed = 0
        for aor in sorted(self._aors.pop(flow, ())):
            current = self.store.current(aor)
            kept = [b for b in current if b.flow != flow]
            if len(kept) != len(current):
                removed += len(current) - len(kept)
                self.store.update(aor, kept).addErrback(
                    lambda failure, aor=aor: log.failure("Removing the WebSocket bindings of {aor} failed",
                                                         failure, aor=aor))
        return removed

    def __len__(self) -> int:
        return len(self._aors)


class SipWebSocket:
    """One RFC 7118 connection: a Twisted ``WebSocketProtocol`` and a flow of ``Transports``.

    ``transport`` is the ``WebSocketWire`` (``unirtc.web.websocket``). Over plain WS (no TLS) only
    loopback peers are served, i.e. a TLS-terminating proxy on this host; anyone else is
    closed with 1008 before a message is read.
    """

    def __init__(self, transports: Transports, flows: FlowBindings | None = None) -> None:
        self.transports = transports
        self.flows = flows
        self.transport: Any = None
        self.transport_name = "WS"
        self.token = ""
        self.peer: tuple[str, int] = ("", 0)
        self.open = False
        self._timer: Any = None
        self._heard = 0.0  # clock time of the last message or pong

    # -- WebSocketProtocol -------------------------------------------------------------------

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        address = self.transport.getPeer()
        self.peer = (_plain_host(str(address.host)), int(address.port))
        self.transport_name = "WSS" if self.transport.secure else "WS"
        if self.transport_name == "WS" and not is_loopback(self.peer[0]):
            log.info("SIP over plain WebSocket from {host} refused: only loopback may skip TLS",
                     host=self.peer[0])
            self.transport.loseConnection(POLICY_VIOLATION, "use wss://")
            return
        self.token = f"{self.transport_name.lower()}-{secrets.token_hex(8)}"
        self.open = True
        self.transports.opened(self)  # type: ignore[arg-type]
        self._heard = self.transports.clock.seconds()
        self._timer = self.transports.clock.callLater(KEEPALIVE_INTERVAL, self._keepalive)
        log.debug("SIP WebSocket {token} from {host} port {port}", token=self.token,
                  host=self.peer[0], port=self.peer[1])

    def textMessageReceived(self, text: str) -> None:
        self._received(text.encode("utf-8"))

    def bytesMessageReceived(self, data: bytes) -> None:
        self._received(data)  # §4.2: binary frames carry SIP too (UTF-8 is not required there)

    def pongReceived(self, payload: bytes) -> None:
        self._heard = self.transports.clock.seconds()

    def connectionLost(self, reason: Any = None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.open:
            return
        self.open = False
        self.transports.closed(self)  # type: ignore[arg-type]
        removed = self.flows.closed(self.token) if self.flows is not None else 0
        log.debug("SIP WebSocket {token} closed; {removed} binding(s) removed", token=self.token,
                  removed=removed)

    # -- the flow --------------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        if not self.open:
            return
        self._heard = self.transports.clock.seconds()
        if is_keepalive(data):
            self.send(b"\r\n")  # RFC 5626 §4.4.1's pong, for clients that ping the SIP way
            return
        source = Hop(self.transport_name, *self.peer, flow=self.token)
        reply = self.transports.deliver(data, source, stream=False)
        if reply is not None:
            self.send(bytes(reply))

    def send(self, data: bytes) -> None:
        """One SIP message, one WebSocket message: text when it is UTF-8 (§4.1), else binary."""
        if not self.open or self.transport is None:
            return
        data = md5_challenges_only(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.transport.sendBytesMessage(data)
        else:
            self.transport.sendTextMessage(text)

    def _keepalive(self) -> None:
        """Every KEEPALIVE_INTERVAL: ping a quiet peer, close one that stopped answering."""
        self._timer = None
        if not self.open:
            return
        quiet = self.transports.clock.seconds() - self._heard
        if quiet >= DEAD_AFTER:
            log.debug("SIP WebSocket {token}: no answer for {quiet:.0f} s, closing", token=self.token, quiet=quiet)
            self.transport.loseConnection(CloseReason.GOING_AWAY, "no answer to pings")
            return
        if quiet >= KEEPALIVE_INTERVAL - 1:
            self.transport.ping(b"")
        self._timer = self.transports.clock.callLater(KEEPALIVE_INTERVAL, self._keepalive)

    def messageTooBig(self) -> None:
        """The wire's bound was passed: one oversized SIP message ends the connection (1009)."""
        self.transports.dropped(Hop(self.transport_name, *self.peer, flow=self.token or None),
                                f"WebSocket message over {MAX_MESSAGE} bytes; closing")
        self.transport.loseConnection(CloseReason.MESSAGE_TOO_BIG, "SIP message too big")


class SipWebSocketFactory:
    """Twisted's ``WebSocketServerFactory`` for the ``sip`` subprotocol: one flow per upgrade."""

    def __init__(self, transports: Transports, flows: FlowBindings | None = None) -> None:
        self.transports = transports
        self.flows = flows

    def buildProtocol(self, request: Request) -> SipWebSocket:
        return SipWebSocket(self.transports, self.flows)


def listener_address(listen: str) -> tuple[str, int] | None:
    """(interface, port) of a ``[web] listen`` endpoint, for our Via and Record-Route; None if
    it names no TCP port (a UNIX socket, say)."""
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(None, listen)
    except Exception:
        return None
    port = getattr(endpoint, "_port", None)
    if not isinstance(port, int) or port <= 0:
        return None
    return str(getattr(endpoint, "_interface", "") or ""), port


def mount(settings: Any, core: Any, bindings: Any, items: Any) -> SipWebSocketFactory | None:
    """Serve ``[sip] websocket`` on the web listener for ``core``; None when not configured.

    The listener joins ``core.transports.listeners`` as ``WSS`` (or ``WS`` with ``[web] tls =
    no``) so the proxy Record-Routes with it and recognises its own Route entries.
    """
    from unirtc.web.websocket import OriginPolicy, WebSocketEndpoint

    if not settings.sip.websocket or not settings.web.listen or items is None:
        return None
    address = listener_address(settings.web.listen)
    if address is not None:
        transport = "WSS" if settings.web.tls else "WS"
        core.transports.listeners.append((transport, *address))
    flows = FlowBindings(bindings)
    if core.registrar is not None:
        flows.watch(core.registrar)
    factory = SipWebSocketFactory(core.transports, flows)
    endpoint = WebSocketEndpoint({SUBPROTOCOL: factory}, OriginPolicy(settings.web.origins),
                                 max_message=MAX_MESSAGE)
    items.add("http-path", (settings.sip.websocket, endpoint))
    return factory

"""A scripted WebSocket client (wsproto, client side) talking to a real twisted.web ``Site`` over
a StringTransport: the HTTP upgrade, masked frames in, the server's frames and close read back."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.server import Site
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)


class WsClient:
    """One connection to ``site``: ``accepted`` tells the handshake's outcome; then ``send_text``,
    ``send_bytes``, ``send_raw`` and ``messages()``/``closed_with`` read what the server said."""

    def __init__(self, site: Site, *, path: str = "/xmpp-websocket", origin: str | None = "https://falcot.com",
                 subprotocols: tuple[str, ...] = ("xmpp",), transport: StringTransport | None = None,
                 host: str = "falcot.com") -> None:
        self.transport = transport or StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.1", 40000))
        self.protocol = site.buildProtocol(self.transport.getPeer())
        self.protocol.makeConnection(self.transport)
        self.ws = WSConnection(ConnectionType.CLIENT)
        headers = [(b"origin", origin.encode())] if origin is not None else []
        self._read = 0
        self.accepted: AcceptConnection | None = None
        self.rejected: RejectConnection | None = None
        self.reject_body = b""
        self.received: list[Any] = []  # str and bytes messages, in order
        self.pongs: list[bytes] = []
        self.pings: list[bytes] = []
        self.closed_with: CloseConnection | None = None
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self.protocol.dataReceived(self.ws.send(Request(host=host, target=path, subprotocols=list(subprotocols),
                                                        extra_headers=headers)))
        self._pump()

    def _pump(self) -> None:
        value = self.transport.value()
        data, self._read = value[self._read:], len(value)
        if data:
            self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.accepted = event
            elif isinstance(event, RejectConnection):
                self.rejected = event
            elif isinstance(event, RejectData):
                self.reject_body += event.data
            elif isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.received.append("".join(self._text))
                    self._text = []
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    self.received.append(b"".join(self._bytes))
                    self._bytes = []
            elif isinstance(event, Ping):
                self.pings.append(bytes(event.payload))
            elif isinstance(event, Pong):
                self.pongs.append(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                self.closed_with = event

    # -- sending ----------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.protocol.dataReceived(data)
        self._pump()

    def send_text(self, text: str, *, fragments: int = 1) -> None:
        """One text message, split into ``fragments`` frames."""
        size = max(1, -(-len(text) // fragments))
        pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
        for index, piece in enumerate(pieces):
            self.send_raw(self.ws.send(TextMessage(piece, message_finished=index == len(pieces) - 1)))

    def send_bytes(self, data: bytes) -> None:
        self.send_raw(self.ws.send(BytesMessage(data)))

    def ping(self, payload: bytes) -> None:
        self.send_raw(self.ws.send(Ping(payload)))

    def close(self, code: int = 1000) -> None:
        self.send_raw(self.ws.send(CloseConnection(code)))

    # -- reading ----------------------------------------------------------------------------------

    def messages(self) -> list[Any]:
        self._pump()
        return self.received

    def take(self) -> list[Any]:
        """The messages received since the last ``take()``."""
        self._pump()
        messages, self.received = self.received, []
        return messages

    @property
    def status(self) -> int | None:
        self._pump()
        if self.accepted is not None:
            return 101
        return self.rejected.status_code if self.rejected is not None else None

    @property
    def disconnected(self) -> bool:
        return self.transport.disconnecting

    def lose(self) -> None:
        """The TCP connection drops."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))

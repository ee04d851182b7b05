"""STUN Binding over TCP (RFC 8489 §6.2.2): the same answers as UDP, framed by the header length.

A STUN message carries its own length, so framing is "read 20 bytes, then the body they
announce". Anything that is not STUN, or a message longer than we answer, closes the
connection: on a stream there is no way to skip to the next message after garbage.
Connections idle longer than ``idle_timeout`` are closed, as RFC 8489 lets servers do.
"""

from __future__ import annotations

import struct

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin

from unirtc.turn.responder import respond
from unirtc.turn.stun import COOKIE, HEADER_LENGTH

MAX_MESSAGE = 2048  # a Binding request with every optional attribute fits easily


class StunStreamProtocol(Protocol, TimeoutMixin):
    def __init__(self, software: str | None, idle_timeout: float) -> None:
        self.software = software
        self.idle_timeout = idle_timeout
        self._buffer = b""

    def connectionMade(self) -> None:
        self.setTimeout(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self._buffer += data
        while len(self._buffer) >= HEADER_LENGTH:
            message_type, length, cookie = struct.unpack(">HHI", self._buffer[:8])
            if message_type & 0xC000 or cookie != COOKIE or HEADER_LENGTH + length > MAX_MESSAGE:
                self.transport.abortConnection()
                return
            end = HEADER_LENGTH + length
            if len(self._buffer) < end:
                return
            frame, self._buffer = self._buffer[:end], self._buffer[end:]
            peer = self.transport.getPeer()
            try:
                answer = respond(frame, (peer.host, peer.port), self.software)
            except ValueError:
                self.transport.abortConnection()
                return
            if answer is not None:
                self.transport.write(answer)

    def connectionLost(self, reason: object = None) -> None:
        self.setTimeout(None)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()


class StunStreamFactory(Factory):
    def __init__(self, reactor, software: str | None = "unirtc", idle_timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.software = software
        self.idle_timeout = idle_timeout

    def buildProtocol(self, addr) -> StunStreamProtocol:
        protocol = StunStreamProtocol(self.software, self.idle_timeout)
        protocol.callLater = self.reactor.callLater
        protocol.factory = self
        return protocol

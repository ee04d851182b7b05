"""The embedded STUN responder: Binding requests over UDP answered with the sender's address.

A small site gets server-reflexive ICE candidates without running coturn.  ``respond`` is the
whole decision (sans-I/O, bytes in, bytes out); ``StunResponder`` is the Twisted adapter around
it.  Input that is not a STUN Binding request is dropped without an answer (RFC 8489 §6.3), so
the responder never reflects garbage at a spoofed source; a Binding request that is framed as
STUN but malformed inside gets 400, and one with unknown comprehension-required attributes 420.
Drops are counted and logged at debug level on the 1st, 2nd, 4th, 8th... only, so a flood of
junk cannot flood the log.
"""

from __future__ import annotations

import binascii
import struct
from typing import Any

from twisted.internet.error import MessageLengthError
from twisted.internet.protocol import DatagramProtocol

from unirtc.logging import get_logger
from unirtc.turn.stun import (
    COOKIE,
    FINGERPRINT_XOR,
    HEADER_LENGTH,
    Class,
    Message,
    Method,
    StunError,
    binding_response,
    parse_message,
)

log = get_logger("unirtc.turn.stun")

_BINDING_REQUEST = 0x0001
_FINGERPRINT = 0x8028


def _binding_request_frame(data: bytes) -> bool:
    """True if the 20-byte header says "Binding request" and its length matches the datagram.

    Only then is the sender clearly speaking STUN to us, and owed a 400 for a bad body rather
    than silence (RFC 8489 §6.3: header checks failing means "not STUN", discard).
    """
    if len(data) < HEADER_LENGTH:
        return False
    message_type, length, cookie = struct.unpack(">HHI", data[:8])
    return (message_type == _BINDING_REQUEST and cookie == COOKIE and length % 4 == 0
            and HEADER_LENGTH + length == len(data))


def _ends_with_fingerprint(data: bytes) -> bool:
    return len(data) >= HEADER_LENGTH + 8 and data[-8:-4] == struct.pack(">HH", _FINGERPRINT, 4)


def _fingerprint_matches(data: bytes) -> bool:
    expected = binascii.crc32(data[:-8]) ^ FINGERPRINT_XOR
    return data[-4:] == struct.pack(">I", expected)


def _bad_request(data: bytes, software: str | None) -> bytes:
    response = Message(Method.BINDING, Class.ERROR, data[8:HEADER_LENGTH])
    response.attributes["ERROR-CODE"] = (400, "Bad Request")
    if software is not None:
        response.attributes["SOFTWARE"] = software
    if _ends_with_fingerprint(data):
        response.add_fingerprint()
    return bytes(response)


def respond(data: bytes, source: tuple[Any, ...], software: str | None = "unirtc") -> bytes | None:
    """The answer owed to one datagram from ``source``, or None for STUN owed no answer.

    Raises ``StunError`` (a ``ValueError``, with the reason) for input to drop silently: non-STUN
    bytes, a failed FINGERPRINT (which RFC 8489 §7.3 says to discard), a source port of 0.
    """
    if not isinstance(source[1], int) or not 0 < source[1] < 65536:
        raise StunError(f"source port {source[1]!r} cannot be answered")
    try:
        request = parse_message(data)
    except StunError:
        if not _binding_request_frame(data):
            raise
        if _ends_with_fingerprint(data) and not _fingerprint_matches(data):
            raise
        return _bad_request(data, software)
    return binding_response(request, source, software)


class StunResponder(DatagramProtocol):
    """Answers Binding requests on one UDP port; counts what it answered and dropped."""

    def __init__(self, software: str | None = "unirtc") -> None:
        self.software = software
        self.answered = 0
        self.dropped = 0

    def datagramReceived(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            answer = respond(data, addr, self.software)
        except ValueError as e:
            self._drop(addr, str(e))
            return
        if answer is None:
            return
        try:
            self.transport.write(answer, addr)
        except (OSError, MessageLengthError) as e:
            self._drop(addr, f"cannot send the answer: {e}")
            return
        self.answered += 1

    def _drop(self, addr: tuple[Any, ...], reason: str) -> None:
        self.dropped += 1
        if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: a flood logs a few lines
            log.debug("STUN responder: dropped {count} datagram(s) so far; latest from {host} port {port}: "
                      "{reason}", count=self.dropped, host=addr[0], port=addr[1], reason=reason)

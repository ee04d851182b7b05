"""STUN message codec (RFC 8489, RFC 5389) and the Binding responder unirtc runs next to its TURN issuer.

Pure bytes in, objects out, as aioice does it: each attribute is one row of ``ATTRIBUTES``
``(type, NAME, pack, unpack)``, ``parse_message(data)`` checks framing, FINGERPRINT and (given a key)
MESSAGE-INTEGRITY, and ``bytes(message)`` serialises.  Every way a datagram can be malformed ends in
``StunError`` (a ``ValueError``), so a UDP adapter drops non-STUN input with one ``except`` clause.

Parsed messages round-trip byte for byte: padding bytes (RFC 5769 pads with spaces) are kept, and
integrity and fingerprint values are stored like any other attribute.  Attributes this codec does
not know are kept raw under their numeric type, so a responder can answer 420 for the
comprehension-required ones (type < 0x8000).
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

COOKIE = 0x2112A442
HEADER_LENGTH = 20
MAX_BODY_LENGTH = 0xFFFC  # the 16-bit length field, rounded down to the 4-byte attribute alignment
MAX_MESSAGE_SIZE = HEADER_LENGTH + MAX_BODY_LENGTH
FINGERPRINT_XOR = 0x5354554E
_COOKIE_BYTES = struct.pack(">I", COOKIE)


class StunError(ValueError):
    """A STUN message that cannot be parsed, verified or serialised; the text says exactly why."""


class Method(IntEnum):
    """STUN methods: Binding (RFC 8489) and the TURN methods (RFC 8656, RFC 6062)."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009
    CONNECT = 0x00A
    CONNECTION_BIND = 0x00B
    CONNECTION_ATTEMPT = 0x00C


class Class(IntEnum):
    """Message classes, valued as the C1/C0 bits sit in the message type (RFC 8489 §5)."""

    REQUEST = 0x000
    INDICATION = 0x010
    RESPONSE = 0x100
    ERROR = 0x110


Pack = Callable[[Any, bytes], bytes]
Unpack = Callable[[bytes, bytes], Any]


def _check_length(data: bytes, expected: int) -> None:
    if len(data) != expected:
        raise StunError(f"bad length: {len(data)} bytes, expected {expected}")


def _uint(size: int, width: int | None = None) -> tuple[Pack, Unpack]:
    """Big-endian unsigned ``size``-byte integer, then reserved bytes up to ``width`` if given."""
    width = width or size

    def pack(value: int, tid: bytes) -> bytes:
        return int(value).to_bytes(size, "big") + bytes(width - size)

    def unpack(data: bytes, tid: bytes) -> int:
        _check_length(data, width)
        return int.from_bytes(data[:size], "big")

    return pack, unpack


def _text(limit: int) -> tuple[Pack, Unpack]:
    """UTF-8 text of at most ``limit`` bytes (RFC 8489 bounds USERNAME, REALM, SOFTWARE...)."""

    def pack(value: str, tid: bytes) -> bytes:
        data = value.encode("utf-8")
        if len(data) > limit:
            raise StunError(f"oversize: {len(data)} bytes of text, limit {limit}")
        return data

    def unpack(data: bytes, tid: bytes) -> str:
        if len(data) > limit:
            raise StunError(f"oversize: {len(data)} bytes of text, limit {limit}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise StunError("text is not valid UTF-8") from None

    return pack, unpack


def _raw(sizes: range | None = None, limit: int = 0xFFFF) -> tuple[Pack, Unpack]:
    """Opaque bytes, of one of ``sizes`` if given (MESSAGE-INTEGRITY is 20, SHA256 16-32)."""

    def pack(value: bytes, tid: bytes) -> bytes:
        return bytes(value)

    def unpack(data: bytes, tid: bytes) -> bytes:
        if sizes is not None and len(data) not in sizes:
            expected = ", ".join(map(str, sizes))
            raise StunError(f"bad length: {len(data)} bytes, expected {expected}")
        if len(data) > limit:
            raise StunError(f"oversize: {len(data)} bytes, limit {limit}")
        return data

    return pack, unpack


def _flag() -> tuple[Pack, Unpack]:
    """An attribute whose presence is the whole message (USE-CANDIDATE, DONT-FRAGMENT)."""

    def pack(value: None, tid: bytes) -> bytes:
        return b""

    def unpack(data: bytes, tid: bytes) -> None:
        _check_length(data, 0)

    return pack, unpack


def _address(xor: bool) -> tuple[Pack, Unpack]:
    """(host, port) for MAPPED-ADDRESS-style attributes; ``xor`` obfuscates them (RFC 8489 §14.2)."""

    def mask(tid: bytes, size: int) -> bytes:
        return (_COOKIE_BYTES + tid)[:size] if xor else bytes(size)

    def pack(value: tuple[str, int], tid: bytes) -> bytes:
        host, port = value
        try:
            address = ipaddress.ip_address(host).packed
        except ValueError:
            raise StunError(f"not an IP address: {host!r}") from None
        family = 1 if len(address) == 4 else 2
        if not 0 <= port <= 0xFFFF:
            raise StunError(f"port {port} is outside 0-65535")
        masked = bytes(a ^ b for a, b in zip(address, mask(tid, len(address))))
        port ^= (COOKIE >> 16) if xor else 0
        return struct.pack(">BBH", 0, family, port) + masked

    def unpack(data: bytes, tid: bytes) -> tuple[str, int]:
        if len(data) < 4:
            raise StunError(f"bad length: {len(data)} bytes is too short for an address")
        family, port = struct.unpack(">xBH", data[:4])
        if family == 1:
            _check_length(data, 8)
        elif family == 2:
            _check_length(data, 20)
        else:
            raise StunError(f"unknown address family 0x{family:02x}")
        address = bytes(a ^ b for a, b in zip(data[4:], mask(tid, len(data) - 4)))
        port ^= (COOKIE >> 16) if xor else 0
        return str(ipaddress.ip_address(address)), port

    return pack, unpack


def _error_code() -> tuple[Pack, Unpack]:
    """(code, reason phrase); the code is split into class (hundreds) and number (RFC 8489 §14.8)."""
    pack_reason, unpack_reason = _text(763)

    def pack(value: tuple[int, str], tid: bytes) -> bytes:
        code, reason = value
        if not 300 <= code <= 699:
            raise StunError(f"error code {code} is outside 300-699")
        return struct.pack(">HBB", 0, code // 100, code % 100) + pack_reason(reason, tid)

    def unpack(data: bytes, tid: bytes) -> tuple[int, str]:
        if len(data) < 4:
            raise StunError(f"bad length: {len(data)} bytes is too short for an error code")
        klass, number = data[2] & 0x07, data[3]
        if not 3 <= klass <= 6 or number > 99:
            raise StunError(f"bad error code: class {klass}, number {number}")
        return klass * 100 + number, unpack_reason(data[4:], tid)

    return pack, unpack


def _type_list() -> tuple[Pack, Unpack]:
    """UNKNOWN-ATTRIBUTES: a list of 16-bit attribute types."""

    def pack(value: list[int], tid: bytes) -> bytes:
        return b"".join(struct.pack(">H", t) for t in value)

    def unpack(data: bytes, tid: bytes) -> list[int]:
        if len(data) % 2:
            raise StunError(f"bad length: {len(data)} bytes is not a list of 16-bit types")
        return [t for (t,) in struct.iter_unpack(">H", data)]

    return pack, unpack


ATTRIBUTES: list[tuple[int, str, Pack, Unpack]] = [
    (0x0001, "MAPPED-ADDRESS", *_address(xor=False)),
    (0x0006, "USERNAME", *_text(512)),  # RFC 5389: fewer than 513 bytes
    (0x0008, "MESSAGE-INTEGRITY", *_raw(range(20, 21))),
    (0x0009, "ERROR-CODE", *_error_code()),
    (0x000A, "UNKNOWN-ATTRIBUTES", *_type_list()),
    (0x000C, "CHANNEL-NUMBER", *_uint(2, 4)),
    (0x000D, "LIFETIME", *_uint(4)),
    (0x0012, "XOR-PEER-ADDRESS", *_address(xor=True)),
    (0x0013, "DATA", *_raw()),
    (0x0014, "REALM", *_text(763)),
    (0x0015, "NONCE", *_raw(limit=763)),
    (0x0016, "XOR-RELAYED-ADDRESS", *_address(xor=True)),
    (0x0017, "REQUESTED-ADDRESS-FAMILY", *_uint(1, 4)),
    (0x0018, "EVEN-PORT", *_uint(1)),
    (0x0019, "REQUESTED-TRANSPORT", *_uint(1, 4)),
    (0x001A, "DONT-FRAGMENT", *_flag()),
    (0x001C, "MESSAGE-INTEGRITY-SHA256", *_raw(range(16, 33, 4))),
    (0x001D, "PASSWORD-ALGORITHM", *_raw(limit=763)),
    (0x001E, "USERHASH", *_raw(range(32, 33))),
    (0x0020, "XOR-MAPPED-ADDRESS", *_address(xor=True)),
    (0x0022, "RESERVATION-TOKEN", *_raw(range(8, 9))),
    (0x0024, "PRIORITY", *_uint(4)),
    (0x0025, "USE-CANDIDATE", *_flag()),
    (0x8000, "ADDITIONAL-ADDRESS-FAMILY", *_uint(1, 4)),
    (0x8002, "PASSWORD-ALGORITHMS", *_raw(limit=763)),
    (0x8003, "ALTERNATE-DOMAIN", *_text(763)),
    (0x8022, "SOFTWARE", *_text(763)),
    (0x8023, "ALTERNATE-SERVER", *_address(xor=False)),
    (0x8028, "FINGERPRINT", *_uint(4)),
    (0x8029, "ICE-CONTROLLED", *_uint(8)),
    (0x802A, "ICE-CONTROLLING", *_uint(8)),
]
_BY_TYPE = {row[0]: row for row in ATTRIBUTES}
_BY_NAME = {row[1]: row for row in ATTRIBUTES}
_INTEGRITY = {"MESSAGE-INTEGRITY": hashlib.sha1, "MESSAGE-INTEGRITY-SHA256": hashlib.sha256}


def _pad(length: int) -> int:
    return -length % 4


def _encode_type(method: int, klass: int) -> int:
    return (method & 0xF) | ((method & 0x70) << 1) | ((method & 0xF80) << 2) | klass


def _decode_type(message_type: int) -> tuple[int, Class]:
    method = (message_type & 0xF) | ((message_type >> 1) & 0x70) | ((message_type >> 2) & 0xF80)
    return method, Class(message_type & 0x110)


def _fingerprint(data: bytes) -> int:
    return binascii.crc32(data) ^ FINGERPRINT_XOR


@dataclass
class Message:
    """One STUN message.

    ``attributes`` maps attribute names (see ``ATTRIBUTES``) to decoded values, in wire order;
    attributes the codec does not know are kept as raw bytes under their numeric type.
    ``padding`` remembers non-zero padding bytes seen on the wire so re-serialising is exact.
    """

    message_method: int
    message_class: Class
    transaction_id: bytes = field(default_factory=lambda: os.urandom(12))
    attributes: dict[str | int, Any] = field(default_factory=dict)
    padding: dict[str | int, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def unknown_required(self) -> list[int]:
        """Unknown comprehension-required attribute types, for a 420 response (RFC 8489 §6.3.1)."""
        return [key for key in self.attributes if isinstance(key, int) and key < 0x8000]

    def _encode_attributes(self) -> bytes:
        out = []
        for key, value in self.attributes.items():
            if isinstance(key, int):
                attr_type, data = key, bytes(value)
            elif key not in _BY_NAME:
                raise StunError(f"unknown attribute name {key!r}")
            else:
                attr_type, _name, pack, _unpack = _BY_NAME[key]
                try:
                    data = pack(value, self.transaction_id)
                except (OverflowError, TypeError, struct.error) as e:
                    raise StunError(f"cannot encode {key}: {e}") from None
            if len(data) > 0xFFFF:
                raise StunError(f"oversize: attribute {key} is {len(data)} bytes")
            padding = self.padding.get(key, b"")
            if len(padding) != _pad(len(data)):
                padding = bytes(_pad(len(data)))
            out.append(struct.pack(">HH", attr_type, len(data)) + data + padding)
        return b"".join(out)

    def _header(self, body_length: int) -> bytes:
        if len(self.transaction_id) != 12 or not 0 <= self.message_method <= 0xFFF:
            raise StunError("a STUN message needs a 12-byte transaction ID and a 12-bit method")
        if body_length > MAX_BODY_LENGTH:
            raise StunError(f"oversize: {body_length} bytes of attributes, limit {MAX_BODY_LENGTH}")
        message_type = _encode_type(self.message_method, self.message_class)
        return struct.pack(">HHI", message_type, body_length, COOKIE) + self.transaction_id

    def __bytes__(self) -> bytes:
        body = self._encode_attributes()
        return self._header(len(body)) + body

    def _append_integrity(self, name: str, key: bytes) -> None:
        for last in ("FINGERPRINT", name):
            self.attributes.pop(last, None)
        hash_ = _INTEGRITY[name]
        body = self._encode_attributes()
        size = hash_().digest_size
        signed = self._header(len(body) + 4 + size) + body
        self.attributes[name] = hmac.new(key, signed, hash_).digest()

    def add_message_integrity(self, key: bytes) -> None:
        """Sign with HMAC-SHA1 (RFC 8489 §14.5); call before ``add_fingerprint``."""
        self._append_integrity("MESSAGE-INTEGRITY", key)

    def add_message_integrity_sha256(self, key: bytes) -> None:
        """Sign with untruncated HMAC-SHA256 (RFC 8489 §14.6), after any MESSAGE-INTEGRITY."""
        self._append_integrity("MESSAGE-INTEGRITY-SHA256", key)

    def add_fingerprint(self) -> None:
        """Append FINGERPRINT, which must stay the last attribute (RFC 8489 §14.7)."""
        self.attributes.pop("FINGERPRINT", None)
        body = self._encode_attributes()
        self.attributes["FINGERPRINT"] = _fingerprint(self._header(len(body) + 8) + body)


def _check_integrity(name: str, data: bytes, offset: int, value: bytes, key: bytes) -> None:
    """Verify the HMAC over everything before ``offset``, with the length as if it ended here."""
    length = offset + 4 + len(value) - HEADER_LENGTH
    signed = data[:2] + struct.pack(">H", length) + data[4:offset]
    expected = hmac.new(key, signed, _INTEGRITY[name]).digest()[: len(value)]
    if not hmac.compare_digest(expected, value):
        raise StunError(f"bad {name}: the HMAC does not match this key")


def _may_follow_signature(key: str | int, signed: list[str]) -> bool:
    """After MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count (RFC 8489 §9)."""
    return key == "FINGERPRINT" or (key == "MESSAGE-INTEGRITY-SHA256" and signed == ["MESSAGE-INTEGRITY"])


def _walk(data: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """Yield (offset, type, value, padding) per attribute, checking only the TLV framing."""
    size, offset = len(data), HEADER_LENGTH
    while offset < size:
        if size - offset < 4:
            raise StunError(f"truncated: attribute header at offset {offset} has {size - offset} of 4 bytes")
        attr_type, attr_length = struct.unpack(">HH", data[offset : offset + 4])
        start, end = offset + 4, offset + 4 + attr_length
        if end > size:
            raise StunError(
                f"truncated: attribute 0x{attr_type:04x} at offset {offset} declares {attr_length} bytes, "
                f"{size - start} remain"
            )
        padded = end + _pad(attr_length)
        if padded > size:
            raise StunError(
                f"bad padding: attribute 0x{attr_type:04x} at offset {offset} ({attr_length} bytes) "
                "is not padded to a multiple of 4"
            )
        yield offset, attr_type, data[start:end], data[end:padded]
        offset = padded


def parse_message(data: bytes, integrity_key: bytes | None = None) -> Message:
    """Decode one STUN message, checking FINGERPRINT if present.

    With ``integrity_key``, MESSAGE-INTEGRITY (and MESSAGE-INTEGRITY-SHA256) must be present and
    correct.  Long-term credentials need USERNAME and REALM first: parse without a key, derive the
    key, then parse again with it.  Attributes after the integrity attributes are ignored, except
    FINGERPRINT (RFC 8489 §9); of repeated attributes, only the first counts (§14).
    """
    size = len(data)
    if size > MAX_MESSAGE_SIZE:
        raise StunError(f"oversize: {size}-byte datagram, a STUN message is at most {MAX_MESSAGE_SIZE}")
    if size < HEADER_LENGTH:
        raise StunError(f"truncated: {size} bytes is shorter than the 20-byte STUN header")
    message_type, length, cookie = struct.unpack(">HHI", data[:8])
    if message_type & 0xC000:
        raise StunError("not STUN: the two most significant bits of the message type must be zero")
    if cookie != COOKIE:
        raise StunError(f"bad magic cookie 0x{cookie:08x}, expected 0x{COOKIE:08x}")
    if HEADER_LENGTH + length > size:
        raise StunError(f"truncated: header declares {length} attribute bytes, {size - HEADER_LENGTH} present")
    if HEADER_LENGTH + length < size:
        raise StunError(f"bad length: header declares {length} attribute bytes, {size - HEADER_LENGTH} present")
    method, klass = _decode_type(message_type)
    tid = data[8:HEADER_LENGTH]
    try:
        method = Method(method)
    except ValueError:
        pass  # unknown methods stay plain ints; requests for them are the caller's to refuse
    message = Message(method, klass, tid)
    signed: list[str] = []
    for offset, attr_type, value, padding in _walk(data):
        row = _BY_TYPE.get(attr_type)
        key: str | int = row[1] if row else attr_type
        if key in message.attributes or (signed and not _may_follow_signature(key, signed)):
            continue
        try:
            message.attributes[key] = row[3](value, tid) if row else value
        except StunError as e:
            raise StunError(f"bad {key} at offset {offset}: {e}") from None
        if padding.strip(b"\0"):
            message.padding[key] = padding
        if key in _INTEGRITY:
            signed.append(str(key))
            if integrity_key is not None:
                _check_integrity(str(key), data, offset, value, integrity_key)
        elif key == "FINGERPRINT":
            if offset + 4 + len(value) + len(padding) != size:
                raise StunError("FINGERPRINT is not the last attribute")
            expected = _fingerprint(data[:offset])
            if value != struct.pack(">I", expected):
                raise StunError(f"bad FINGERPRINT 0x{value.hex()}, expected 0x{expected:08x}")
    if integrity_key is not None and not signed:
        raise StunError("missing MESSAGE-INTEGRITY: the message is not signed")
    return message


def _reflexive(source: tuple[Any, ...]) -> tuple[str, int]:
    """The address to report: scope stripped, IPv4-mapped IPv6 (a dual-stack socket) as IPv4."""
    address = ipaddress.ip_address(str(source[0]).split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address), int(source[1])


def binding_response(
    request: Message, source: tuple[str, int], software: str | None = "unirtc"
) -> bytes | None:
    """Answer a Binding request from ``source`` (RFC 8489 §6.3.1), or None when nothing is owed.

    Indications, responses and requests for other methods get no answer; a request with unknown
    comprehension-required attributes gets 420 with UNKNOWN-ATTRIBUTES.  The response carries
    FINGERPRINT when the request did.  ``source`` may be Twisted's 4-tuple IPv6 address.
    """
    if request.message_class != Class.REQUEST or request.message_method != Method.BINDING:
        return None
    unknown = request.unknown_required
    if unknown:
        response = Message(Method.BINDING, Class.ERROR, request.transaction_id)
        response.attributes["ERROR-CODE"] = (420, "Unknown Attribute")
        response.attributes["UNKNOWN-ATTRIBUTES"] = unknown
    else:
        response = Message(Method.BINDING, Class.RESPONSE, request.transaction_id)
        response.attributes["XOR-MAPPED-ADDRESS"] = _reflexive(source)
    if software is not None:
        response.attributes["SOFTWARE"] = software
    if "FINGERPRINT" in request.attributes:
        response.add_fingerprint()
    return bytes(response)

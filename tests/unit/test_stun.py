"""Tests for unirtc.turn.stun: RFC 5769 vectors, the codec, hostile input and the Binding responder."""

from __future__ import annotations

import ast
import hashlib
import hmac
import ipaddress
import json
import pathlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.turn.credentials import long_term_key
from unirtc.turn.stun import (
    COOKIE,
    Class,
    Message,
    Method,
    StunError,
    binding_response,
    parse_message,
)

CORPORA = pathlib.Path(__file__).parent.parent / "corpora"
RFC5769 = CORPORA / "stun_rfc5769"
VECTORS = json.loads((RFC5769 / "rfc5769_vectors.json").read_text())["vectors"]
SHORT_TERM = [name for name in VECTORS if "password_short_term" in VECTORS[name]]
TID = bytes(range(12))


def vector(name: str) -> bytes:
    return (RFC5769 / f"{name}.bin").read_bytes()


def fuzz_attribute_types() -> list[int]:
    """The attribute types named in coturn's libFuzzer dictionary (kw_attr_* entries)."""
    types = []
    for line in (CORPORA / "stun_fuzz" / "stun.dict").read_text().splitlines():
        if line.startswith("kw_attr_"):
            raw = ast.literal_eval(line.split("=", 1)[1])
            types.append(int.from_bytes(raw.encode("latin-1"), "big"))
    return types


def frame(attributes: bytes, message_type: int = 0x0001, tid: bytes = TID) -> bytes:
    """A STUN header with a correct length in front of already-encoded attributes."""
    return struct.pack(">HHI", message_type, len(attributes), COOKIE) + tid + attributes


def tlv(attr_type: int, value: bytes, padding: bytes | None = None) -> bytes:
    pad = bytes(-len(value) % 4) if padding is None else padding
    return struct.pack(">HH", attr_type, len(value)) + value + pad


class RFC5769Tests(SynchronousTestCase):
    """The RFC 5769 sample messages."""

    def test_vectorsRoundTrip(self) -> None:
        """
        If an RFC 5769 sample is parsed and serialised again, the bytes are identical,
        space padding included; the .hex copies hold the same bytes.
        """
        for name, info in VECTORS.items():
            data = vector(name)
            self.assertEqual(data.hex(), info["hex"])
            self.assertEqual((RFC5769 / f"{name}.hex").read_text().strip(), info["hex"])
            self.assertEqual(bytes(parse_message(data)), data, name)

    def test_shortTermIntegrity(self) -> None:
        """
        If the short-term password is given as the key, samples 2.1-2.3 verify;
        any other key is a bad MESSAGE-INTEGRITY.
        """
        self.assertEqual(len(SHORT_TERM), 3)
        for name in SHORT_TERM:
            key = VECTORS[name]["password_short_term"].encode()
            message = parse_message(vector(name), integrity_key=key)
            self.assertEqual(len(message.attributes["MESSAGE-INTEGRITY"]), 20)
            with self.assertRaisesRegex(StunError, "bad MESSAGE-INTEGRITY"):
                parse_message(vector(name), integrity_key=key + b"x")

    def test_longTermIntegrity(self) -> None:
        """
        If the key is derived from USERNAME, REALM and the SASLprep'd password, sample 2.4
        verifies; a wrong password is a bad MESSAGE-INTEGRITY.
        """
        info = VECTORS["2.4_sample_request_long_term_auth"]
        message = parse_message(vector("2.4_sample_request_long_term_auth"))
        self.assertEqual(message.attributes["USERNAME"], info["username_unicode"])
        self.assertEqual(message.attributes["REALM"], info["realm"])
        self.assertEqual(message.attributes["NONCE"], info["nonce"].encode())
        self.assertEqual(message.transaction_id.hex(), info["transaction_id"])
        password = "The\u00adM\u00aatr\u2168"
        key = long_term_key(message.attributes["USERNAME"], message.attributes["REALM"], password)
        self.assertEqual(key.hex(), info["long_term_key_md5_hex"])
        parse_message(vector("2.4_sample_request_long_term_auth"), integrity_key=key)
        wrong = long_term_key(info["username_unicode"], info["realm"], "TheMatrIX!")
        with self.assertRaisesRegex(StunError, "bad MESSAGE-INTEGRITY"):
            parse_message(vector("2.4_sample_request_long_term_auth"), integrity_key=wrong)

    def test_fingerprintChecked(self) -> None:
        """
        If one byte covered by FINGERPRINT is changed, parsing fails with bad FINGERPRINT.
        """
        for name in SHORT_TERM:
            data = bytearray(vector(name))
            self.assertIn("FINGERPRINT", parse_message(bytes(data)).attributes)
            data[27] ^= 0x01
            with self.assertRaisesRegex(StunError, "bad FINGERPRINT"):
                parse_message(bytes(data))

    def test_sampleRequest(self) -> None:
        """
        If sample 2.1 is parsed, it is a Binding request with the documented attributes.
        """
        info = VECTORS["2.1_sample_request"]
        message = parse_message(vector("2.1_sample_request"))
        self.assertEqual((message.message_method, message.message_class), (Method.BINDING, Class.REQUEST))
        self.assertEqual(message.transaction_id.hex(), info["transaction_id"])
        self.assertEqual(message.attributes["SOFTWARE"], info["software"])
        self.assertEqual(message.attributes["USERNAME"], info["username"])
        self.assertEqual(list(message.attributes), [a.strip() for a in info["attributes"].split(",")])
        self.assertEqual(message.unknown_required, [])

    def test_xorMappedAddresses(self) -> None:
        """
        If the response samples are parsed, XOR-MAPPED-ADDRESS decodes to the documented
        IPv4 and IPv6 addresses, and SOFTWARE is the 11-byte "test vector".
        """
        ipv4 = parse_message(vector("2.2_sample_ipv4_response"))
        ipv6 = parse_message(vector("2.3_sample_ipv6_response"))
        self.assertEqual(ipv4.message_class, Class.RESPONSE)
        self.assertEqual(ipv4.attributes["XOR-MAPPED-ADDRESS"], ("192.0.2.1", 32853))
        self.assertEqual(ipv6.attributes["XOR-MAPPED-ADDRESS"], ("2001:db8:1234:5678:11:2233:4455:6677", 32853))
        self.assertEqual(ipv4.attributes["SOFTWARE"], "test vector")

    def test_freshSignaturesVerify(self) -> None:
        """
        If sample 2.2's content is rebuilt and signed afresh, the result parses with the
        same key and carries the same XOR-MAPPED-ADDRESS.
        """
        original = parse_message(vector("2.2_sample_ipv4_response"))
        key = VECTORS["2.2_sample_ipv4_response"]["password_short_term"].encode()
        rebuilt = Message(Method.BINDING, Class.RESPONSE, original.transaction_id)
        rebuilt.attributes["SOFTWARE"] = "test vector"
        rebuilt.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.1", 32853)
        rebuilt.add_message_integrity(key)
        rebuilt.add_fingerprint()
        data = bytes(rebuilt)
        self.assertEqual(len(data), len(vector("2.2_sample_ipv4_response")))
        self.assertEqual(parse_message(data, integrity_key=key), rebuilt)


class CodecTests(SynchronousTestCase):
    """Encoding and decoding beyond the RFC samples."""

    def test_messageTypeBits(self) -> None:
        """
        If method and class are encoded, the C1/C0 bits interleave with the method bits.
        """
        cases = [
            (Method.BINDING, Class.RESPONSE, 0x0101),
            (Method.ALLOCATE, Class.ERROR, 0x0113),
            (Method.SEND, Class.INDICATION, 0x0016),
            (Method.CHANNEL_BIND, Class.REQUEST, 0x0009),
            (0xFFF, Class.ERROR, 0x3FFF),
        ]
        for method, klass, wire in cases:
            data = bytes(Message(method, klass, TID))
            self.assertEqual(struct.unpack(">H", data[:2])[0], wire)
            parsed = parse_message(data)
            self.assertEqual((parsed.message_method, parsed.message_class), (method, klass))

    def test_unknownAttributes(self) -> None:
        """
        If a message carries attributes the codec does not know, they are kept raw under
        their type, only comprehension-required ones are reported, and bytes round-trip.
        """
        data = frame(tlv(0x8888, b"abc", b"\xff") + tlv(0x0033, b"") + tlv(0x7FFF, b"\x01\x02\x03\x04"))
        message = parse_message(data)
        self.assertEqual(message.attributes, {0x8888: b"abc", 0x0033: b"", 0x7FFF: b"\x01\x02\x03\x04"})
        self.assertEqual(message.unknown_required, [0x0033, 0x7FFF])
        self.assertEqual(bytes(message), data)

    def test_attributeValuesRoundTrip(self) -> None:
        """
        If a message is built with each kind of attribute value, parsing its bytes gives the
        same values back.
        """
        message = Message(Method.ALLOCATE, Class.ERROR, TID)
        message.attributes.update({
            "MAPPED-ADDRESS": ("10.0.0.1", 1),
            "ALTERNATE-SERVER": ("::1", 3478),
            "XOR-PEER-ADDRESS": ("2001:db8::9", 65535),
            "ERROR-CODE": (438, "Stale Nonce"),
            "UNKNOWN-ATTRIBUTES": [0x0033, 0x0034, 0x0035],
            "CHANNEL-NUMBER": 0x4000,
            "LIFETIME": 600,
            "REQUESTED-TRANSPORT": 17,
            "DONT-FRAGMENT": None,
            "DATA": b"\x00" * 7,
            "USERNAME": "joe@falcot.com",
            "NONCE": b"abc",
            "ICE-CONTROLLING": 2**64 - 1,
        })
        data = bytes(message)
        self.assertEqual(len(data) % 4, 0)
        self.assertEqual(parse_message(data), message)
        self.assertIn(b"\x00\x09\x00\x0f\x00\x00\x04\x26Stale Nonce\x00", data)

    def test_messageIntegritySha256(self) -> None:
        """
        If a message is signed with MESSAGE-INTEGRITY and then MESSAGE-INTEGRITY-SHA256, both
        are checked: the right key verifies, another key fails.
        """
        message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "joe"})
        message.add_message_integrity(b"key")
        message.add_message_integrity_sha256(b"key")
        message.add_fingerprint()
        self.assertEqual(list(message.attributes)[-3:], ["MESSAGE-INTEGRITY", "MESSAGE-INTEGRITY-SHA256", "FINGERPRINT"])
        self.assertEqual(parse_message(bytes(message), integrity_key=b"key"), message)
        with self.assertRaisesRegex(StunError, "bad MESSAGE-INTEGRITY"):
            parse_message(bytes(message), integrity_key=b"other")

    def test_truncatedSha256(self) -> None:
        """
        If MESSAGE-INTEGRITY-SHA256 is truncated to 16 bytes it verifies (RFC 8489 §14.6);
        12 bytes is a bad length.
        """
        body = tlv(0x0006, b"joe")
        for size, ok in ((16, True), (12, False)):
            header = struct.pack(">HHI", 0x0001, len(body) + 4 + size, COOKIE) + TID
            mac = hmac.new(b"key", header + body, hashlib.sha256).digest()[:size]
            data = header + body + tlv(0x001C, mac)
            if ok:
                self.assertEqual(parse_message(data, integrity_key=b"key").attributes["MESSAGE-INTEGRITY-SHA256"], mac)
            else:
                self.assertRaisesRegex(StunError, "bad MESSAGE-INTEGRITY-SHA256 at offset 28: bad length", parse_message, data)

    def test_attributesAfterIntegrityIgnored(self) -> None:
        """
        If attributes other than FINGERPRINT follow MESSAGE-INTEGRITY, they are ignored and
        the signature still verifies (RFC 8489 §9).
        """
        message = Message(Method.BINDING, Class.REQUEST, TID, {"USERNAME": "joe"})
        message.add_message_integrity(b"key")
        signed = bytes(message)
        extra = tlv(0x8022, b"evil") + tlv(0x0033, b"")
        data = frame(signed[20:] + extra, tid=TID)
        parsed = parse_message(data, integrity_key=b"key")
        self.assertNotIn("SOFTWARE", parsed.attributes)
        self.assertEqual(parsed.unknown_required, [])

    def test_missingIntegrity(self) -> None:
        """
        If a key is given but the message is unsigned, parsing fails with missing MESSAGE-INTEGRITY.
        """
        self.assertRaisesRegex(StunError, "missing MESSAGE-INTEGRITY", parse_message, frame(b""), b"key")

    def test_firstDuplicateWins(self) -> None:
        """
        If an attribute is repeated, the first occurrence is the one kept.
        """
        data = frame(tlv(0x0006, b"first") + tlv(0x0006, b"second"))
        self.assertEqual(parse_message(data).attributes["USERNAME"], "first")

    def test_fingerprintMustBeLast(self) -> None:
        """
        If an attribute follows FINGERPRINT, the message is rejected.
        """
        message = Message(Method.BINDING, Class.REQUEST, TID)
        message.add_fingerprint()
        data = frame(bytes(message)[20:] + tlv(0x8022, b"late"))
        self.assertRaisesRegex(StunError, "FINGERPRINT is not the last attribute", parse_message, data)

    def test_encodingErrors(self) -> None:
        """
        If an attribute value cannot be encoded, or the message exceeds the 16-bit length,
        serialising raises StunError.
        """
        bad = [
            {"XOR-MAPPED-ADDRESS": ("example.com", 1)},
            {"XOR-MAPPED-ADDRESS": ("192.0.2.1", 70000)},
            {"ERROR-CODE": (200, "OK")},
            {"NO-SUCH-ATTRIBUTE": b""},
            {"USERNAME": "x" * 513},
            {"LIFETIME": 2**32},
            {"DATA": bytes(65536)},
            {"DATA": bytes(40000), 0x8888: bytes(40000)},
        ]
        for attributes in bad:
            self.assertRaises(StunError, bytes, Message(Method.BINDING, Class.REQUEST, TID, attributes))
        self.assertRaises(StunError, bytes, Message(Method.BINDING, Class.REQUEST, TID[:5]))
        self.assertRaises(StunError, bytes, Message(0x1000, Class.REQUEST, TID))


class HostileInputTests(SynchronousTestCase):
    """Malformed, oversized and hostile datagrams all end in StunError with a precise reason."""

    def assertRejected(self, data: bytes, reason: str) -> None:
        with self.assertRaises(StunError) as caught:
            parse_message(data)
        self.assertIn(reason, str(caught.exception))
        self.assertIsInstance(caught.exception, ValueError)

    def test_truncatedHeader(self) -> None:
        """
        If fewer than 20 bytes arrive (including none), the message is truncated.
        """
        header = vector("2.1_sample_request")[:20]
        for size in range(20):
            self.assertRejected(header[:size], "truncated")

    def test_lengthPastTheEnd(self) -> None:
        """
        If the header declares more attribute bytes than arrived, including the largest
        16-bit length, the message is truncated.
        """
        for length in (4, 8, 0xFFFC, 0xFFFF):
            self.assertRejected(struct.pack(">HHI", 1, length, COOKIE) + TID, "truncated")
        self.assertRejected(vector("2.1_sample_request")[:-4], "truncated")

    def test_trailingBytes(self) -> None:
        """
        If more bytes arrive than the header declares, the length is bad.
        """
        self.assertRejected(vector("2.1_sample_request") + bytes(4), "bad length")

    def test_attributeLengthPastTheEnd(self) -> None:
        """
        If an attribute declares more bytes than the message holds, it is truncated.
        """
        for declared in (5, 100, 0xFFFF):
            self.assertRejected(frame(struct.pack(">HH", 0x0006, declared) + b"abcd"), "truncated: attribute 0x0006")

    def test_truncatedAttributeHeader(self) -> None:
        """
        If fewer than 4 bytes remain for an attribute header, it is truncated.
        """
        self.assertRejected(frame(b"\x00\x06"), "truncated: attribute header")

    def test_badPadding(self) -> None:
        """
        If the last attribute is not padded to a multiple of 4 bytes, the padding is bad.
        """
        self.assertRejected(frame(struct.pack(">HH", 0x0006, 5) + b"alice"), "bad padding")

    def test_badCookieAndLeadingBits(self) -> None:
        """
        If the magic cookie is wrong or the first two bits are set (RTP, TLS, HTTP...),
        the datagram is not STUN.
        """
        data = bytearray(vector("2.2_sample_ipv4_response"))
        data[4] ^= 0xFF
        self.assertRejected(bytes(data), "bad magic cookie 0xde12a442")
        self.assertRejected(b"\x80" + vector("2.2_sample_ipv4_response")[1:], "not STUN")
        self.assertRejected(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not STUN")

    def test_oversizeDatagram(self) -> None:
        """
        If a datagram is larger than any STUN message can be, it is rejected as oversize.
        """
        self.assertRejected(frame(b"")[:20] + bytes(70000), "oversize")

    def test_badFingerprint(self) -> None:
        """
        If FINGERPRINT has the wrong value or size, the message is rejected.
        """
        data = bytearray(vector("2.1_sample_request"))
        data[-1] ^= 0x01
        self.assertRejected(bytes(data), "bad FINGERPRINT")
        self.assertRejected(frame(tlv(0x8028, b"\x00\x00")), "bad FINGERPRINT at offset 20: bad length")

    def test_badAttributeValues(self) -> None:
        """
        If a known attribute's value is malformed, the error names the attribute and the fault.
        """
        cases = [
            (tlv(0x0020, b"\x00\x03\x00\x01" + bytes(4)), "bad XOR-MAPPED-ADDRESS at offset 20: unknown address family"),
            (tlv(0x0020, b"\x00\x01\x00\x01" + bytes(16)), "bad XOR-MAPPED-ADDRESS at offset 20: bad length"),
            (tlv(0x0001, b"\x00\x02"), "bad MAPPED-ADDRESS at offset 20: bad length"),
            (tlv(0x0006, b"\xff\xfe"), "bad USERNAME at offset 20: text is not valid UTF-8"),
            (tlv(0x0006, b"x" * 513), "bad USERNAME at offset 20: oversize: 513 bytes of text, limit 512"),
            (tlv(0x0009, b"\x00\x00\x07\x00"), "bad ERROR-CODE at offset 20: bad error code"),
            (tlv(0x0009, b"\x00\x00\x04\x64"), "bad ERROR-CODE at offset 20: bad error code"),
            (tlv(0x000A, b"\x00\x01\x00"), "bad UNKNOWN-ATTRIBUTES at offset 20: bad length"),
            (tlv(0x0008, b""), "bad MESSAGE-INTEGRITY at offset 20: bad length"),
            (tlv(0x0025, b"\x01"), "bad USE-CANDIDATE at offset 20: bad length"),
        ]
        for attributes, reason in cases:
            self.assertRejected(frame(attributes), reason)
        self.assertEqual(parse_message(frame(tlv(0x0006, b"x" * 512))).attributes["USERNAME"], "x" * 512)

    def test_validInputAfterHostileInput(self) -> None:
        """
        If garbage was rejected, the next valid message still parses (the codec keeps no state).
        """
        self.assertRaises(StunError, parse_message, b"\x00\x01\xff\xff" + bytes(16))
        self.assertEqual(bytes(parse_message(vector("2.1_sample_request"))), vector("2.1_sample_request"))


class BindingResponseTests(SynchronousTestCase):
    """The Binding responder."""

    def respond(self, request: Message, source: tuple, **kwargs: object) -> Message:
        data = binding_response(request, source, **kwargs)
        assert data is not None
        response = parse_message(data)
        self.assertEqual(response.transaction_id, request.transaction_id)
        self.assertEqual(response.message_method, Method.BINDING)
        return response

    def test_ipv4Source(self) -> None:
        """
        If a Binding request arrives from an IPv4 source, the success response's
        XOR-MAPPED-ADDRESS decodes to that source and SOFTWARE names unirtc.
        """
        response = self.respond(Message(Method.BINDING, Class.REQUEST), ("198.51.100.7", 40000))
        self.assertEqual(response.message_class, Class.RESPONSE)
        self.assertEqual(response.attributes, {"XOR-MAPPED-ADDRESS": ("198.51.100.7", 40000), "SOFTWARE": "unirtc"})

    def test_ipv6Sources(self) -> None:
        """
        If the source is IPv6 (Twisted's 4-tuple, with or without a scope), the address is
        reflected; an IPv4-mapped address from a dual-stack socket is reported as IPv4.
        """
        request = Message(Method.BINDING, Class.REQUEST)
        cases = [
            (("2001:db8::1", 3478), ("2001:db8::1", 3478)),
            (("2001:db8::1", 3478, 0, 0), ("2001:db8::1", 3478)),
            (("fe80::1%eth0", 5, 0, 2), ("fe80::1", 5)),
            (("::ffff:192.0.2.9", 1234, 0, 0), ("192.0.2.9", 1234)),
        ]
        for source, reflected in cases:
            response = self.respond(request, source, software=None)
            self.assertEqual(response.attributes, {"XOR-MAPPED-ADDRESS": reflected})

    def test_fingerprintEchoed(self) -> None:
        """
        If the request carried FINGERPRINT (RFC 5769 sample 2.1), so does the response, and it verifies.
        """
        request = parse_message(vector("2.1_sample_request"))
        response = self.respond(request, ("192.0.2.1", 32853))
        self.assertEqual(list(response.attributes), ["XOR-MAPPED-ADDRESS", "SOFTWARE", "FINGERPRINT"])

    def test_unknownRequiredAttribute(self) -> None:
        """
        If the request has an unknown comprehension-required attribute, the answer is a 420
        error listing it (and not the unknown optional one).
        """
        request = parse_message(frame(tlv(0x8888, b"opt") + tlv(0x0033, b"x")))
        response = self.respond(request, ("192.0.2.1", 1))
        self.assertEqual(response.message_class, Class.ERROR)
        self.assertEqual(response.attributes["ERROR-CODE"], (420, "Unknown Attribute"))
        self.assertEqual(response.attributes["UNKNOWN-ATTRIBUTES"], [0x0033])
        self.assertNotIn("XOR-MAPPED-ADDRESS", response.attributes)

    def test_noAnswer(self) -> None:
        """
        If the message is an indication, a response, or a request for another method,
        there is no answer.
        """
        for method, klass in [
            (Method.BINDING, Class.INDICATION),
            (Method.BINDING, Class.RESPONSE),
            (Method.BINDING, Class.ERROR),
            (Method.ALLOCATE, Class.REQUEST),
        ]:
            self.assertIsNone(binding_response(Message(method, klass), ("192.0.2.1", 1)))


@given(st.binary(max_size=600))
def test_parseArbitraryBytesRaisesOnlyStunError(data: bytes) -> None:
    """If arbitrary bytes are parsed, the only possible failure is StunError."""
    try:
        parse_message(data)
    except StunError:
        pass


ATTRIBUTE_SOUP = st.lists(
    st.tuples(
        st.sampled_from(fuzz_attribute_types() + [0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x001C, 0x8028]),
        st.binary(max_size=40),
    ),
    max_size=8,
)


@settings(max_examples=300)
@given(ATTRIBUTE_SOUP, st.integers(0, 0x3FFF), st.binary(min_size=12, max_size=12))
def test_framedAttributeSoup(attributes: list[tuple[int, bytes]], message_type: int, tid: bytes) -> None:
    """
    If well-framed messages carry random values for known attribute types (from coturn's
    fuzzing dictionary), parsing gives StunError or a message that re-serialises and re-parses
    to an equal message.
    """
    data = frame(b"".join(tlv(t, v) for t, v in attributes), message_type, tid)
    try:
        message = parse_message(data)
    except StunError:
        return
    assert parse_message(bytes(message)) == message


@given(st.ip_addresses(), st.integers(0, 65535), st.binary(min_size=12, max_size=12))
def test_bindingReflectsAnyAddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, tid: bytes) -> None:
    """If any IPv4 or IPv6 source sends a Binding request, XOR-MAPPED-ADDRESS decodes back to it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    data = binding_response(Message(Method.BINDING, Class.REQUEST, tid), (str(address), port))
    assert data is not None
    assert parse_message(data).attributes["XOR-MAPPED-ADDRESS"] == (str(address), port)

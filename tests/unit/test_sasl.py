"""Tests for unirtc.xmpp.sasl: RFC 5802/7677 and XEP-0474 vectors, negative cases, hostile input."""

from __future__ import annotations

import base64
import hmac
import json
import pathlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.directory.secrets import (
    ScramSecret,
    derive_scram,
    prepare_password,
    salted_password,
    scram_keys,
)
from unirtc.xmpp.sasl import (
    MAX_SCRAM_MESSAGE,
    SCRAM_MECHANISMS,
    Challenge,
    Failure,
    PlainRequest,
    PlainServer,
    ScramServer,
    Success,
    check_authzid,
    check_mechanism,
    decode_payload,
    encode_payload,
    mechanisms,
    ssdp_hash,
)

CORPUS = json.loads(
    (pathlib.Path(__file__).parent.parent / "corpora" / "scram" / "scram_vectors.json").read_text()
)
VECTORS: dict[str, dict[str, Any]] = CORPUS["vectors"]
SHA1 = VECTORS["rfc5802_scram_sha1"]
SHA256 = VECTORS["rfc7677_scram_sha256"]
PLUS = VECTORS["xep0474_scram_sha1_plus_tls_exporter"]
KEY = b"fake-salt-key-for-tests"
CB_TYPES = ["tls-server-end-point", "tls-exporter"]
FAKE_CB = {"tls-exporter": b"THIS IS FAKE CB DATA", "tls-server-end-point": b"\x01" * 32}


def _secret(vector: dict[str, Any]) -> ScramSecret:
    salt = base64.b64decode(vector["salt_b64"])
    return derive_scram(vector["hash"], vector["password"], salt, vector["iterations"])


SECRET_1 = _secret(SHA1)
SECRET_256 = _secret(SHA256)


def _server_nonce(vector: dict[str, Any]) -> str:
    client_nonce = vector["client_first"].split(",r=", 1)[1]
    server_nonce: str = vector["server_first"].split(",")[0][2:]
    return server_nonce[len(client_nonce):]


def _server(hash_name: str = "sha256", plus: bool = False, cb_types: list[str] | None = None,
            **kwargs: Any) -> ScramServer:
    return ScramServer(hash_name, plus, cb_types or [], FAKE_CB.get, fake_salt_key=KEY, **kwargs)


def _client_final(secret_password: str, hash_name: str, bare: str, server_first: str,
                  without_proof: str) -> bytes:
    """What a correct client sends, given the exchange so far (its own SCRAM client math)."""
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
    salted = salted_password(hash_name, secret_password, salt, iterations)
    client_key, stored_key, _ = scram_keys(hash_name, salted)
    auth_message = f"{bare},{server_first},{without_proof}".encode()
    signature = hmac.new(stored_key, auth_message, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def _exchange(server: ScramServer, client_first: str, secret: ScramSecret | None,
              password: str = "pencil", cb_data: bytes = b"", extra: str = "",
              nonce_suffix: str = "") -> Success | Failure:
    """Run a whole exchange with a correct client; ``extra`` adds final-message attributes."""
    username = server.start(client_first.encode())
    if isinstance(username, Failure):
        return username
    challenge = server.first(secret)
    assert isinstance(challenge, Challenge)
    server_first = challenge.data.decode()
    gs2, bare = client_first.split(",", 2)[:2], client_first.split(",", 2)[2]
    header = f"{gs2[0]},{gs2[1]},".encode() + cb_data
    nonce = server_first.split(",")[0][2:] + nonce_suffix
    without_proof = f"c={base64.b64encode(header).decode()},r={nonce}{extra}"
    final = _client_final(password, server.hash_name, bare, server_first, without_proof)
    return server.final(final)


class ScramVectorTests(SynchronousTestCase):
    """The published exchanges, byte for byte."""

    def _replay(self, vector: dict[str, Any], server: ScramServer) -> None:
        self.assertEqual(server.start(vector["client_first"].encode()), vector["username"])
        self.assertEqual(server.first(_secret(vector)), Challenge(vector["server_first"].encode()))
        result = server.final(vector["client_final"].encode())
        self.assertEqual(result, Success(vector["server_final"].encode(), vector["username"], None))

    def test_rfc5802Sha1Exchange(self) -> None:
        """If the RFC 5802 §5 client talks to SCRAM-SHA-1 with its salt and nonce, every server
        message matches the RFC."""
        self._replay(SHA1, _server("sha1", nonce=_server_nonce(SHA1)))

    def test_rfc7677Sha256Exchange(self) -> None:
        """If the RFC 7677 §3 client talks to SCRAM-SHA-256 with its salt and nonce, every server
        message matches the RFC."""
        self._replay(SHA256, _server("sha256", nonce=_server_nonce(SHA256)))

    def test_xep0474PlusExchange(self) -> None:
        """If the XEP-0474 client uses tls-exporter and sends an unknown x= attribute, the server
        emits the example's h= and accepts the proof, answering with the example's v=."""
        ssdp = PLUS["ssdp"]
        server = _server("sha1", True, ssdp["advertised_cb_types"], nonce=_server_nonce(PLUS),
                         advertised_mechanisms=ssdp["advertised_mechanisms"])
        self.assertEqual(server.name, "SCRAM-SHA-1-PLUS")
        self._replay(PLUS, server)

    def test_ssdpHashMatchesVector(self) -> None:
        """If the advertised lists are hashed per XEP-0474, the result is the example's h=, and it
        changes when a -PLUS mechanism is stripped (which the client then detects)."""
        ssdp = PLUS["ssdp"]
        self.assertEqual(ssdp_hash("sha1", ssdp["advertised_mechanisms"], CB_TYPES), ssdp["h"])
        self.assertNotEqual(ssdp_hash("sha1", ["SCRAM-SHA-1"], CB_TYPES), ssdp["h"])
        stripped = ssdp_hash("sha1", ssdp["advertised_mechanisms"], ["tls-exporter"])
        self.assertNotEqual(stripped, ssdp["h"])

    def test_plusWithoutSsdp(self) -> None:
        """If no advertised list is given, server-first has no h= and the XEP-0474 client's
        exchange (recomputed without h=) still verifies with its channel binding and x=."""
        server = _server("sha1", True, CB_TYPES, nonce=_server_nonce(PLUS))
        result = _exchange(server, PLUS["client_first"], SECRET_1, cb_data=b"THIS IS FAKE CB DATA",
                           extra=",x=19C6532F-1CF4-4A27-A18D-DC9CEA41BBB3")
        self.assertNotIn(b",h=", server._server_first.encode())
        self.assertIsInstance(result, Success)

    def test_tlsServerEndPointSha256Plus(self) -> None:
        """If a client binds with tls-server-end-point on SCRAM-SHA-256-PLUS, it is accepted."""
        server = _server("sha256", True, CB_TYPES)
        result = _exchange(server, "p=tls-server-end-point,,n=user,r=abcdef", SECRET_256,
                           cb_data=FAKE_CB["tls-server-end-point"])
        assert isinstance(result, Success)
        self.assertEqual((result.username, result.authzid), ("user", None))
        self.assertTrue(result.data and result.data.startswith(b"v="))

    def test_extensionInClientFirstIsSigned(self) -> None:
        """If client-first carries an unknown attribute, it is ignored but still part of the
        AuthMessage: the exchange succeeds."""
        result = _exchange(_server(), "n,,n=user,r=abcdef,q=whatever", SECRET_256)
        self.assertIsInstance(result, Success)


class ScramNegativeTests(SynchronousTestCase):
    """The corpus's negative cases and hostile input, each ending in a Failure."""

    def _fails(self, result: object, condition: str, text: str | None = None) -> None:
        self.assertIsInstance(result, Failure)
        assert isinstance(result, Failure)
        self.assertEqual(result.condition, condition)
        if text is not None:
            self.assertEqual(result.text, text)

    def test_wrongNonce(self) -> None:
        """If client-final echoes a nonce other than server-first's, it is not-authorized."""
        self._fails(_exchange(_server(), "n,,n=user,r=abcdef", SECRET_256, nonce_suffix="X"),
                    "not-authorized")

    def test_serverNonceExtendsClientNonce(self) -> None:
        """If a client sends nonce N, server-first's r= starts with N and adds fresh characters
        that differ between exchanges."""
        first = [_server(), _server()]
        nonces = []
        for server in first:
            server.start(b"n,,n=user,r=abcdef")
            challenge = server.first(SECRET_256)
            assert isinstance(challenge, Challenge)
            nonces.append(challenge.data.split(b",")[0][2:])
        self.assertTrue(all(n.startswith(b"abcdef") and len(n) > 6 for n in nonces))
        self.assertNotEqual(nonces[0], nonces[1])

    def test_bindingDoesNotMatchHeader(self) -> None:
        """If c= is 'biws' after a 'p=tls-exporter' header, it is not-authorized."""
        server = _server("sha1", True, CB_TYPES, nonce=_server_nonce(PLUS))
        server.start(PLUS["client_first"].encode())
        server.first(SECRET_1)
        binding = "c=" + base64.b64encode(b"p=tls-exporter,,THIS IS FAKE CB DATA").decode()
        self.assertIn(binding, PLUS["client_final"])
        final = PLUS["client_final"].replace(binding, "c=biws")
        self._fails(server.final(final.encode()), "not-authorized", "channel-bindings-dont-match")

    def test_wrongBindingData(self) -> None:
        """If c= carries other channel-binding data than this connection's, it is not-authorized."""
        result = _exchange(_server("sha256", True, CB_TYPES), "p=tls-exporter,,n=user,r=abc",
                           SECRET_256, cb_data=b"OTHER CB DATA")
        self._fails(result, "not-authorized", "channel-bindings-dont-match")

    def test_yFlagWhenPlusOffered(self) -> None:
        """If the client says 'y' (thinks the server lacks channel binding) while -PLUS was offered,
        it is a downgrade and not-authorized; without -PLUS offered, 'y' is fine."""
        self._fails(_server("sha256", False, CB_TYPES).start(b"y,,n=user,r=abc"),
                    "not-authorized", "server-does-support-channel-binding")
        self.assertIsInstance(_exchange(_server(), "y,,n=user,r=abc", SECRET_256), Success)

    def test_bindingFlagMismatch(self) -> None:
        """If a -PLUS exchange sends 'n', or a plain one sends 'p=', it is malformed."""
        plus = _server("sha256", True, CB_TYPES)
        self._fails(plus.start(b"n,,n=user,r=abc"), "malformed-request")
        self._fails(_server("sha256", False, CB_TYPES).start(b"p=tls-exporter,,n=user,r=abc"),
                    "malformed-request")

    def test_unofferedBindingType(self) -> None:
        """If the client asks for a binding type not offered, or one the connection cannot give,
        it is not-authorized."""
        self._fails(_server("sha256", True, ["tls-exporter"]).start(b"p=tls-unique,,n=user,r=abc"),
                    "not-authorized", "unsupported-channel-binding-type")
        server = ScramServer("sha256", True, ["tls-exporter"], lambda _: None, fake_salt_key=KEY)
        self._fails(server.start(b"p=tls-exporter,,n=user,r=abc"), "not-authorized")

    def test_mandatoryExtension(self) -> None:
        """If client-first has a mandatory m= extension, it fails as extensions-not-supported."""
        self._fails(_server().start(b"n,,m=ext,n=user,r=abc"), "malformed-request",
                    "extensions-not-supported")

    def test_iterationsNeverBelowPolicy(self) -> None:
        """If asked to store i=1, derive_scram refuses; an unknown user is offered i=4096."""
        self.assertRaises(ValueError, derive_scram, "sha256", "pencil", b"salt", 1)
        server = _server()
        server.start(b"n,,n=nobody,r=abc")
        self.assertTrue(server.first(None).data.endswith(b",i=4096"))  # type: ignore[union-attr]

    def test_authzid(self) -> None:
        """If the authzid names another account or is no JID, check_authzid gives invalid-authzid;
        if it names the user's own JID, the success stands."""
        result = _exchange(_server(), "n,a=admin@falcot.com,n=user,r=abc", SECRET_256)
        assert isinstance(result, Success)
        self.assertEqual(result.authzid, "admin@falcot.com")
        self._fails(check_authzid(result, "user@falcot.com"), "invalid-authzid")

        def prep(jid: str) -> str:
            if "@" not in jid:
                raise ValueError(jid)
            return jid.lower()

        result.authzid = "User@Falcot.com"
        self.assertIs(check_authzid(result, "user@falcot.com", prep), result)
        result.authzid = "nonsense"
        self._fails(check_authzid(result, "user@falcot.com", prep), "invalid-authzid")
        result.authzid = None
        self.assertIs(check_authzid(result, "user@falcot.com"), result)

    def test_usernameEscaping(self) -> None:
        """If n= holds =2C/=3D they decode to ',' and '='; a bare '=' or ',' or other escape is
        malformed."""
        self.assertEqual(_server().start(b"n,,n=a=2Cb=3Dc,r=abc"), "a,b=c")
        self.assertEqual(_server().start(b"n,a=x=3Dy,n=u,r=abc"), "u")
        for bad in (b"n,,n=u=er,r=abc", b"n,,n=u,er,r=abc", b"n,,n=u=2c,r=abc", b"n,,n=u=,r=abc",
                    b"n,,n=,r=abc", b"n,a=,n=u,r=abc", b"n,a=b=,n=u,r=abc"):
            self._fails(_server().start(bad), "malformed-request")

    def test_wrongPassword(self) -> None:
        """If the proof was made from another password, it is not-authorized."""
        self._fails(_exchange(_server(), "n,,n=user,r=abc", SECRET_256, password="pen"),
                    "not-authorized", "invalid-proof")

    def test_unknownUserLooksLikeKnown(self) -> None:
        """If the account does not exist, server-first has a stable 16-byte salt per name and key
        and the usual iteration count, and the exchange fails exactly like a wrong password."""
        def salt(name: str, key: bytes = KEY, account: str | None = None) -> bytes:
            server = ScramServer("sha256", False, [], FAKE_CB.get, fake_salt_key=key)
            server.start(f"n,,n={name},r=abc".encode())
            challenge = server.first(None, account)
            assert isinstance(challenge, Challenge)
            return base64.b64decode(challenge.data.split(b",")[1][2:])

        self.assertEqual(salt("ghost"), salt("ghost"))
        self.assertEqual(len(salt("ghost")), 16)
        self.assertNotEqual(salt("ghost"), salt("phantom"))
        self.assertNotEqual(salt("ghost"), salt("ghost", b"other key"))
        self.assertEqual(salt("GHOST", account="ghost"), salt("ghost"))
        wrong = _exchange(_server(), "n,,n=user,r=abc", SECRET_256, password="pen")
        self.assertEqual(_exchange(_server(), "n,,n=ghost,r=abc", None), wrong)

    def test_tamperedProof(self) -> None:
        """If one bit of a correct proof is flipped, it is not-authorized."""
        vector = SHA256
        server = _server(nonce=_server_nonce(vector))
        server.start(vector["client_first"].encode())
        server.first(SECRET_256)
        head, proof = vector["client_final"].rsplit("p=", 1)
        raw = bytearray(base64.b64decode(proof))
        raw[0] ^= 1
        final = f"{head}p={base64.b64encode(bytes(raw)).decode()}"
        self._fails(server.final(final.encode()), "not-authorized", "invalid-proof")

    def test_badFinalMessages(self) -> None:
        """If client-final has bad base64, a short proof, missing or repeated attributes, it is
        malformed; each case on a fresh exchange."""
        for bad in ("c=biws,r=abcSERVER,p=!!!!", "c=b!ws,r=abcSERVER,p=AAAA",
                    "c=biws,r=abcSERVER,p=AAAA", "c=biws,p=" + "A" * 44,
                    "r=abcSERVER,c=biws,p=" + "A" * 44, "c=biws,r=abcSERVER,c=biws,p=" + "A" * 44,
                    "c=biws,r=abcSERVER,,p=" + "A" * 44, "c=biws,r=abcSERVER,xx,p=" + "A" * 44,
                    "c=biws,r=abcSERVER", ""):
            server = _server(nonce="SERVER")
            server.start(b"n,,n=user,r=abc")
            server.first(SECRET_256)
            self._fails(server.final(bad.encode()), "malformed-request")

    def test_badClientFirst(self) -> None:
        """If the gs2 header or the bare message is malformed, or the input is empty, oversized,
        holds NUL or is not UTF-8, start fails with malformed-request."""
        for bad in (b"", b"n", b"n,,", b"x,,n=user,r=abc", b"p=,,n=user,r=abc",
                    b"p=tls exporter,,n=user,r=abc", b"n,b=x,n=user,r=abc", b"n,,r=abc,n=user",
                    b"n,,n=user,r=", b"n,,n=user,r=a b", b"n,,n=user,x=abc", b"n,,n=user,r=abc,zz",
                    b"n,,n=us\x00er,r=abc", b"n,,n=\xff\xfe,r=abc", b"n,,n=\xed\xa0\x80,r=abc",
                    b"n,,n=user,r=abc,q=" + b"x" * MAX_SCRAM_MESSAGE):
            self._fails(_server().start(bad), "malformed-request")

    def test_outOfOrderSteps(self) -> None:
        """If steps come out of order or after a failure, they fail and the first failure sticks."""
        self._fails(_server().final(b"c=biws,r=abc,p=AAAA"), "malformed-request",
                    "unexpected-message")
        self._fails(_server().first(SECRET_256), "malformed-request", "unexpected-message")
        server = _server()
        self.assertEqual(server.start(b"n,,n=user,r=abc"), "user")
        self._fails(server.start(b"n,,n=user,r=abc"), "malformed-request", "unexpected-message")
        self._fails(server.first(SECRET_256), "malformed-request", "unexpected-message")
        done = _server()
        self.assertIsInstance(_exchange(done, "n,,n=user,r=abc", SECRET_256), Success)
        self._fails(done.final(b"c=biws,r=abc,p=AAAA"), "malformed-request")

    def test_misuseRaises(self) -> None:
        """If the integrator passes a secret of the wrong hash, an unsupported hash, a -PLUS
        mechanism without binding types or a nonce with ',', ValueError is raised."""
        server = _server("sha256")
        server.start(b"n,,n=user,r=abc")
        self.assertRaises(ValueError, server.first, SECRET_1)
        self.assertRaises(ValueError, _server, "md5")
        self.assertRaises(ValueError, _server, "sha1", True, [])
        self.assertRaises(ValueError, _server, nonce="a,b")

    def test_failureNeedsRfcCondition(self) -> None:
        """If a Failure is built with a condition RFC 6120 does not define, ValueError is raised."""
        self.assertRaises(ValueError, Failure, "bad-password")
        self.assertEqual(Failure("aborted").text, None)


class PlainTests(SynchronousTestCase):
    """RFC 4616 PLAIN against the stored SCRAM secret."""

    def test_validLogin(self) -> None:
        """If the password matches the stored secret, PLAIN succeeds with no additional data."""
        server = PlainServer()
        self.assertEqual(server.start(b"\x00user\x00pencil"), PlainRequest(None, "user", "pencil"))
        self.assertEqual(server.finish(SECRET_256, "pencil"), Success(None, "user", None))

    def test_authzidPassedOn(self) -> None:
        """If an authzid is given it is returned for the caller to check."""
        server = PlainServer()
        request = server.start(b"a@b\x00user\x00pencil")
        self.assertEqual(request, PlainRequest("a@b", "user", "pencil"))
        self.assertEqual(server.finish(SECRET_1, "pencil"), Success(None, "user", "a@b"))

    def test_wrongPasswordAndUnknownUser(self) -> None:
        """If the password is wrong or the account unknown, PLAIN is not-authorized."""
        for secret, password in ((SECRET_256, "pen"), (None, "pencil")):
            server = PlainServer()
            server.start(b"\x00user\x00" + password.encode())
            self.assertEqual(server.finish(secret, password), Failure("not-authorized"))

    def test_passwordPrepared(self) -> None:
        """If a password is sent decomposed while it was stored composed, OpaqueString's NFC makes
        them equal and PLAIN succeeds; a password the profile rejects is not-authorized."""
        stored = derive_scram("sha256", prepare_password("caf\u00e9"), b"salt", 4096)
        server = PlainServer()
        request = server.start("\x00user\x00cafe\u0301".encode())
        assert isinstance(request, PlainRequest)
        self.assertEqual(server.finish(stored, request.password), Success(None, "user", None))
        server = PlainServer()
        server.start(b"\x00user\x00bad\x07")
        self.assertEqual(server.finish(stored, "bad\x07"), Failure("not-authorized"))

    def test_malformed(self) -> None:
        """If fields are missing, empty, too long, not UTF-8 or extra, PLAIN is malformed."""
        long = b"x" * 256
        for bad in (b"", b"user", b"\x00user", b"\x00\x00pencil", b"\x00user\x00",
                    b"a\x00b\x00c\x00d",
                    b"\x00" + long + b"\x00p", b"\x00u\x00" + long, long + b"\x00u\x00p",
                    b"\x00\xff\x00p", b"\x00u\x00" + b"x" * 1000):
            result = PlainServer().start(bad)
            self.assertIsInstance(result, Failure)
            assert isinstance(result, Failure)
            self.assertEqual(result.condition, "malformed-request")
        self.assertIsInstance(PlainServer().start(b"\x00" + b"x" * 255 + b"\x00p"), PlainRequest)

    def test_outOfOrder(self) -> None:
        """If finish comes before start, or start twice, it fails."""
        self.assertIsInstance(PlainServer().finish(SECRET_256, "pencil"), Failure)
        server = PlainServer()
        server.start(b"\x00user\x00pencil")
        self.assertIsInstance(server.start(b"\x00user\x00pencil"), Failure)
        self.assertIsInstance(server.finish(SECRET_256, "pencil"), Failure)


class HelperTests(SynchronousTestCase):
    """Mechanism lists and RFC 6120 payload encoding."""

    def test_mechanisms(self) -> None:
        """If TLS has binding types, all five are offered best first; PLUS needs both, PLAIN TLS."""
        self.assertEqual(mechanisms(True, CB_TYPES), ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
                                                      "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        self.assertEqual(mechanisms(True, []), ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
        self.assertEqual(mechanisms(False, CB_TYPES), ["SCRAM-SHA-256", "SCRAM-SHA-1"])

    def test_mechanismTable(self) -> None:
        """If a server is built from SCRAM_MECHANISMS[name], it reports that very name."""
        for name in mechanisms(True, CB_TYPES)[:-1]:
            hash_name, plus = SCRAM_MECHANISMS[name]
            self.assertEqual(_server(hash_name, plus, CB_TYPES).name, name)

    def test_checkMechanism(self) -> None:
        """If the client picks PLAIN in clear it is encryption-required; anything not offered is
        invalid-mechanism; an offered one passes."""
        self.assertEqual(check_mechanism("PLAIN", False, []), Failure("encryption-required"))
        self.assertEqual(check_mechanism("DIGEST-MD5", True, CB_TYPES),
                         Failure("invalid-mechanism"))
        self.assertEqual(check_mechanism("SCRAM-SHA-1-PLUS", False, CB_TYPES),
                         Failure("invalid-mechanism"))
        self.assertIsNone(check_mechanism("SCRAM-SHA-256-PLUS", True, CB_TYPES))

    def test_payloadEncoding(self) -> None:
        """If the element is empty there is no data, '=' is empty data, bad base64 is
        incorrect-encoding, and encode_payload inverts decode_payload."""
        self.assertIsNone(decode_payload(""))
        self.assertEqual(decode_payload("="), b"")
        self.assertEqual(decode_payload("biws"), b"n,,")
        for bad in ("b!ws", "biw", "bi ws", "bïws"):
            self.assertEqual(decode_payload(bad), Failure("incorrect-encoding"))
        for data in (None, b"", b"n,,"):
            self.assertEqual(decode_payload(encode_payload(data)), data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_startNeverRaises(data: bytes) -> None:
    """If arbitrary bytes reach SCRAM or PLAIN start, the result is a value or a Failure."""
    result = _server("sha256", True, CB_TYPES).start(data)
    assert isinstance(result, (str, Failure))
    assert isinstance(PlainServer().start(data), (PlainRequest, Failure))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=600),
                 st.text(max_size=200).map(lambda t: ("c=biws,r=abcSERVER," + t).encode())))
def test_finalNeverRaises(data: bytes) -> None:
    """If arbitrary bytes arrive as client-final, the result is a Failure, never an exception."""
    server = _server(nonce="SERVER")
    server.start(b"n,,n=user,r=abc")
    server.first(SECRET_256)
    assert isinstance(server.final(data), Failure)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=50).filter(lambda s: "\x00" not in s))
def test_usernameRoundTrips(name: str) -> None:
    """If any username is escaped per RFC 5802 §5.1, start returns it exactly as sent."""
    escaped = name.replace("=", "=3D").replace(",", "=2C")
    assert _server().start(f"n,,n={escaped},r=abc".encode()) == name


@given(st.text(max_size=100))
def test_decodePayloadNeverRaises(text: str) -> None:
    """If arbitrary element text is decoded, the result is None, bytes or incorrect-encoding."""
    result = decode_payload(text)
    assert result is None or isinstance(result, bytes) or result == Failure("incorrect-encoding")


"""SASL on a client stream: SCRAM (-PLUS) and PLAIN against the directory, throttling, refusals."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import Client, FakeServer, FakeTLSConnection, scram_client_final
from unirtc.xmpp.channel_binding import binding_data

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
CLIENT_NONCE = "fyko+d2lbbFgONRv9qkxdawL"


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(element) -> str:
    return base64.b64decode(str(element)).decode()


def condition(element) -> str:
    return next(c.name for c in element.elements() if c.name != "text")


class SaslTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.server.directory.add("joe", "pencil")

    def secure_client(self, tls_version: str = "TLSv1.3", peer_host: str = "192.0.2.1") -> Client:
        client = self.server.connect(peer_host, tls_version)
        client.open()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        client.restarted()
        client.open()
        return client

    def scram(self, client: Client, mechanism: str = "SCRAM-SHA-256", password: str = "pencil",
              username: str = "joe", gs2: str = "n,,", cb_data: bytes = b""):
        """Run a SCRAM exchange like a real client; returns (last element, expected v=)."""
        hash_name = "sha1" if "SHA-1" in mechanism else "sha256"
        bare = f"n={username},r={CLIENT_NONCE}"
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{b64(gs2 + bare)}</auth>")
        challenge = client.last()
        if challenge.name != "challenge":
            return challenge, None
        server_first = unb64(challenge)
        final, verifier = scram_client_final(password, hash_name, bare, server_first, gs2.encode() + cb_data)
        client.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
        return client.last(), verifier

    def test_scramSha256Succeeds(self) -> None:
        """
        If a client runs SCRAM-SHA-256 with the right password, the server's first message carries
        the stored salt and iterations, <success/> carries the server signature the client expects,
        and the stream restarts into resource binding.
        """
        client = self.secure_client()
        result, verifier = self.scram(client)
        self.assertEqual(result.name, "success")
        self.assertEqual(base64.b64decode(str(result)), verifier)
        client.restarted()
        client.open()
        features = client.last()
        self.assertEqual([c.name for c in features.elements()], ["bind", "session"])

    def test_scramSha1Succeeds(self) -> None:
        """
        If a client uses SCRAM-SHA-1, the SHA-1 secret is used and the login succeeds.
        """
        result, verifier = self.scram(self.secure_client(), "SCRAM-SHA-1")
        self.assertEqual((result.name, base64.b64decode(str(result))), ("success", verifier))

    def test_scramPlusTlsExporter(self) -> None:
        """
        If a client on TLS 1.3 binds to tls-exporter with the right data, SCRAM-SHA-256-PLUS
        succeeds; with other binding data it fails with not-authorized.
        """
        data = binding_data(FakeTLSConnection("TLSv1.3"), "tls-exporter")
        result, _ = self.scram(self.secure_client(), "SCRAM-SHA-256-PLUS", gs2="p=tls-exporter,,", cb_data=data)
        self.assertEqual(result.name, "success")
        result, _ = self.scram(self.secure_client(), "SCRAM-SHA-256-PLUS", gs2="p=tls-exporter,,",
                               cb_data=b"\x00" * 32)
        self.assertEqual((result.name, condition(result)), ("failure", "not-authorized"))

    def test_scramPlusServerEndPointOnTls12(self) -> None:
        """
        If the stream runs TLS 1.2, only tls-server-end-point is advertised (XEP-0440) and it works,
        binding to the hash of the server certificate; tls-exporter is refused.
        """
        client = self.secure_client("TLSv1.2")
        bindings = next(client.last().elements("urn:xmpp:sasl-cb:0", "sasl-channel-binding"))
        self.assertEqual([b["type"] for b in bindings.elements()], ["tls-server-end-point"])
        data = binding_data(FakeTLSConnection("TLSv1.2"), "tls-server-end-point")
        self.assertEqual(len(data), 48)  # the test certificate is signed with SHA-384
        result, _ = self.scram(client, "SCRAM-SHA-1-PLUS", gs2="p=tls-server-end-point,,", cb_data=data)
        self.assertEqual(result.name, "success")
        result, _ = self.scram(self.secure_client("TLSv1.2"), "SCRAM-SHA-256-PLUS", gs2="p=tls-exporter,,")
        self.assertEqual(condition(result), "not-authorized")

    def test_wrongPasswordAndUnknownUserLookAlike(self) -> None:
        """
        If the password is wrong, or the user does not exist, the client gets not-authorized after a
        normal-looking challenge; the unknown user's salt is stable across attempts.
        """
        result, _ = self.scram(self.secure_client(), password="wrong")
        self.assertEqual((result.name, condition(result)), ("failure", "not-authorized"))
        salts = []
        for _ in range(2):
            client = self.secure_client(peer_host="198.51.100.7")
            client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64('n,,n=nobody,r=abc')}</auth>")
            salts.append(dict(p.split("=", 1) for p in unb64(client.last()).split(","))["s"])
        self.assertEqual(salts[0], salts[1])
        result, _ = self.scram(self.secure_client(), username="nobody")
        self.assertEqual(condition(result), "not-authorized")

    def test_plainOverTls(self) -> None:
        """
        If a client on TLS sends PLAIN (also with a bare-JID username), the password is checked
        against the stored secret; a wrong one is not-authorized.
        """
        for user, password, outcome in (("joe", "pencil", "success"), ("joe@falcot.com", "pencil", "success"),
                                        ("joe", "nope", "failure")):
            client = self.secure_client()
            plain = b64(f"\0{user}\0{password}")
            client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{plain}</auth>")
            self.assertEqual(client.last().name, outcome)

    def test_plainWithoutInitialResponse(self) -> None:
        """
        If <auth/> carries no initial response, the server sends an empty challenge and takes the
        credentials from the response.
        """
        client = self.secure_client()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'/>")
        self.assertEqual((client.last().name, str(client.last())), ("challenge", "="))
        client.send(f"<response xmlns='{NS_SASL}'>{b64(chr(0) + 'joe' + chr(0) + 'pencil')}</response>")
        self.assertEqual(client.last().name, "success")

    def test_disabledAccount(self) -> None:
        """
        If the password is right but the account is disabled, the failure is account-disabled.
        """
        self.server.directory.add("gone", "pencil", disabled=True)
        result, _ = self.scram(self.secure_client(), username="gone")
        self.assertEqual(condition(result), "account-disabled")

    def test_foreignAuthzidRefused(self) -> None:
        """
        If a client authenticates as joe but asks to act as roland, it gets invalid-authzid.
        """
        result, _ = self.scram(self.secure_client(), gs2="n,a=roland@falcot.com,")
        self.assertEqual(condition(result), "invalid-authzid")

    def test_unknownMechanismAndAbort(self) -> None:
        """
        If a client picks a mechanism not offered it gets invalid-mechanism; <abort/> gets aborted.
        """
        client = self.secure_client()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='DIGEST-MD5'/>")
        self.assertEqual(condition(client.last()), "invalid-mechanism")
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64('n,,n=joe,r=abc')}</auth>")
        client.send(f"<abort xmlns='{NS_SASL}'/>")
        self.assertEqual(condition(client.last()), "aborted")

    def test_lookupIsAsynchronous(self) -> None:
        """
        If the directory answers later, nothing is sent until it does and the client's next
        elements wait in order; then the challenge goes out.
        """
        client = self.secure_client()
        self.server.directory.hold()
        client.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64('n,,n=joe,r=abc')}</auth>"
                    f"<abort xmlns='{NS_SASL}'/>")
        self.assertEqual(client.last().name, "features")
        self.assertEqual(client.transport.producerState, "paused")
        self.server.directory.release()
        names = [e.name for e in client.elements()]
        self.assertEqual(names[-2:], ["challenge", "failure"])

    def test_tooManyFailuresOnOneStream(self) -> None:
        """
        If a client fails five times on one stream, the stream ends with not-authorized.
        """
        client = self.secure_client()
        for _ in range(5):
            self.assertIsNone(client.stream_error())
            client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(chr(0) + 'joe' + chr(0) + 'bad')}</auth>")
        self.assertEqual(client.stream_error(), "not-authorized")

    def test_repeatedFailuresAreThrottled(self) -> None:
        """
        If one address keeps failing, after the free attempts further logins are refused with
        temporary-auth-failure without checking the password (no directory lookup), even with
        the right password; another address logging in to another account is unaffected, and
        the block expires.
        """
        self.server.directory.add("roland", "pen")
        for _ in range(6):
            client = self.secure_client(peer_host="203.0.113.9")
            client.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(chr(0) + 'joe' + chr(0) + 'bad')}</auth>")
            self.assertEqual(condition(client.last()), "not-authorized")
        lookups = len(self.server.directory.lookups)
        client = self.secure_client(peer_host="203.0.113.9")
        result, _ = self.scram(client)
        self.assertEqual(condition(result), "temporary-auth-failure")
        self.assertEqual(len(self.server.directory.lookups), lookups)
        result, _ = self.scram(self.secure_client(peer_host="192.0.2.50"), username="roland", password="pen")
        self.assertEqual(result.name, "success")
        self.server.clock.advance(5)
        result, _ = self.scram(self.secure_client(peer_host="203.0.113.9"))
        self.assertEqual(result.name, "success")

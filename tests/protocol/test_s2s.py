"""Incoming federation streams over StringTransports: STARTTLS, SASL EXTERNAL, dialback, invalid-from."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.s2s_helpers import (
    DIALBACK,
    EXTERNAL,
    LOCAL,
    NO_DB_HEADER,
    PEER_HEADER,
    PROCEED,
    REMOTE,
    STARTTLS,
    Network,
    Peer,
    answer_header,
    features,
)
from unirtc.xmpp.dialback import NS_DIALBACK, dialback_key
from unirtc.xmpp.resolver import Target
from unirtc.xmpp.s2s_in import IncomingSession

STARTTLS_REQUEST = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
MESSAGE = "<message from='bob@example.org/phone' to='joe@falcot.com' type='chat'><body>Hi Joe</body></message>"


def external(domain: str | None = REMOTE) -> bytes:
    content = base64.b64encode(domain.encode()).decode() if domain else "="
    return f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{content}</auth>".encode()


def secured(net: Network, chain=None) -> tuple[Peer, IncomingSession]:
    """An incoming stream from example.org, past STARTTLS, with the features read and cleared."""
    peer, session = net.incoming(chain)
    peer.send(PEER_HEADER)
    peer.send(STARTTLS_REQUEST)
    assert peer.last().name == "proceed"
    peer.send(PEER_HEADER)
    peer.elements()
    return peer, session


def offered(peer: Peer) -> set[tuple[str, str]]:
    features = peer.named("features")[-1]
    return {(c.uri, c.name) for c in features.elements()}


class StreamTests(SynchronousTestCase):
    def test_headerAndStarttlsRequired(self) -> None:
        """
        If a server opens a stream to falcot.com, the answer names both domains, declares xmlns:db
        and offers only STARTTLS, marked required.
        """
        net = Network()
        peer, _ = net.incoming()
        peer.send(PEER_HEADER)
        self.assertEqual((peer.header["from"], peer.header["to"], peer.header["version"]), (LOCAL, REMOTE, "1.0"))
        self.assertTrue(peer.header["id"])
        self.assertEqual(peer.prefixes[-1].get("db"), NS_DIALBACK)
        [starttls] = peer.named("features")[-1].elements()
        self.assertEqual((starttls.uri, starttls.name), ("urn:ietf:params:xml:ns:xmpp-tls", "starttls"))
        self.assertEqual([c.name for c in starttls.elements()], ["required"])

    def test_componentDomainIsServed(self) -> None:
        """If the stream is to the MUC component domain, it is accepted like the account domain."""
        net = Network()
        peer, _ = net.incoming()
        peer.send(PEER_HEADER.replace(b"to='falcot.com'", b"to='conference.falcot.com'"))
        self.assertIsNone(peer.stream_error())
        self.assertEqual(peer.header["from"], "conference.falcot.com")

    def test_unknownHost(self) -> None:
        """If the stream is to a domain this server does not serve, it ends with host-unknown."""
        net = Network()
        peer, _ = net.incoming()
        peer.send(PEER_HEADER.replace(b"to='falcot.com'", b"to='example.net'"))
        self.assertEqual(peer.stream_error(), "host-unknown")
        self.assertTrue(peer.disconnected)

    def test_fromOurOwnDomain(self) -> None:
        """If a peer claims to be falcot.com itself, the stream ends with invalid-from."""
        net = Network()
        peer, _ = net.incoming()
        peer.send(PEER_HEADER.replace(b"from='example.org'", b"from='falcot.com'"))
        self.assertEqual(peer.stream_error(), "invalid-from")

    def test_dialbackBeforeTlsIsAPolicyViolation(self) -> None:
        """If the peer tries dialback before STARTTLS while encryption is required, policy-violation."""
        net = Network()
        peer, _ = net.incoming()
        peer.send(PEER_HEADER)
        peer.send("<db:result from='example.org' to='falcot.com'>abc</db:result>")
        self.assertEqual(peer.stream_error(), "policy-violation")
        self.assertEqual(net.attempts, [])

    def test_stanzaBeforeAuthentication(self) -> None:
        """If the peer sends a stanza before authenticating, not-authorized, and nothing is routed."""
        net = Network()
        peer, _ = secured(net)
        peer.send(MESSAGE)
        self.assertEqual(peer.stream_error(), "not-authorized")
        self.assertEqual(net.joe.received, [])

    def test_noAuthenticationInTime(self) -> None:
        """If the peer does not authenticate within the negotiation timeout, connection-timeout."""
        net = Network()
        peer, _ = secured(net)
        net.clock.advance(61)
        self.assertEqual(peer.stream_error(), "connection-timeout")


class ExternalTests(SynchronousTestCase):
    def test_externalThenStanzas(self) -> None:
        """
        If the peer's certificate is valid for example.org, EXTERNAL and dialback are offered;
        EXTERNAL succeeds, the restarted stream has no features, and a message from a user at
        example.org reaches joe's session through the router.
        """
        net = Network()
        peer, session = secured(net)
        self.assertEqual(offered(peer), {("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"),
                                         ("urn:xmpp:features:dialback", "dialback")})
        self.assertEqual(net.tls.asked, [("server",)])
        peer.send(external())
        self.assertEqual(peer.last().name, "success")
        peer.send(PEER_HEADER)
        self.assertEqual(list(peer.named("features")[-1].elements()), [])
        peer.send(MESSAGE)
        [message] = net.joe.received
        self.assertEqual((message["from"], str(message.body)), ("bob@example.org/phone", "Hi Joe"))
        self.assertEqual(session.security.auth, "SASL EXTERNAL")
        self.assertTrue(session.security.verified)

    def test_deliverRoutesToThePeerDomain(self) -> None:
        """If a plugin delivers a reply to the incoming session, it goes out on our own link."""
        net = Network()
        _, session = secured(net)
        session.deliver(net.message(to="bob@example.org/phone", body="reply"))
        [attempt] = net.attempts
        self.assertEqual(attempt.peer.header["to"], REMOTE)

    def test_emptyAuthzid(self) -> None:
        """If EXTERNAL carries '=' (no authzid), the stream's from domain is authenticated."""
        net = Network()
        peer, session = secured(net)
        peer.send(external(None))
        self.assertEqual(peer.last().name, "success")
        self.assertEqual(session.authenticated, {REMOTE})

    def test_untrustedCertificate(self) -> None:
        """
        If the certificate is self-signed, EXTERNAL is not offered (dialback is), and an EXTERNAL
        attempt anyway fails with not-authorized while the stream stays open.
        """
        net = Network()
        peer, session = secured(net, net.untrusted_chain())
        self.assertEqual(offered(peer), {("urn:xmpp:features:dialback", "dialback")})
        peer.send(external())
        failure = peer.last()
        self.assertEqual((failure.name, [c.name for c in failure.elements()]), ("failure", ["not-authorized"]))
        self.assertFalse(peer.disconnected)
        self.assertEqual(session.authenticated, set())

    def test_authzidForAnotherDomain(self) -> None:
        """If the authzid names another domain than the stream's from, invalid-authzid."""
        net = Network()
        peer, _ = secured(net)
        peer.send(external("example.net"))
        self.assertEqual([c.name for c in peer.last().elements()], ["invalid-authzid"])

    def test_badBase64(self) -> None:
        """If the EXTERNAL response is not base64, incorrect-encoding."""
        net = Network()
        peer, _ = secured(net)
        peer.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>!!</auth>")
        self.assertEqual([c.name for c in peer.last().elements()], ["incorrect-encoding"])


class InvalidFromTests(SynchronousTestCase):
    def authenticated(self) -> tuple[Network, Peer]:
        net = Network()
        peer, _ = secured(net)
        peer.send(external())
        peer.send(PEER_HEADER)
        return net, peer

    def test_spoofedFromDomain(self) -> None:
        """
        If an authenticated example.org sends a stanza from another domain, the stream ends with
        invalid-from, the connection closes and nothing is delivered.
        """
        net, peer = self.authenticated()
        peer.send(MESSAGE.replace("bob@example.org", "mallory@evil.example"))
        self.assertEqual(peer.stream_error(), "invalid-from")
        self.assertTrue(peer.disconnected)
        self.assertEqual(net.joe.received, [])

    def test_missingAddresses(self) -> None:
        """If a stanza lacks 'from' or 'to', improper-addressing."""
        net, peer = self.authenticated()
        peer.send("<message to='joe@falcot.com'><body>x</body></message>")
        self.assertEqual(peer.stream_error(), "improper-addressing")

    def test_toAnotherDomain(self) -> None:
        """If a stanza is addressed to a domain this server does not serve, host-unknown."""
        net, peer = self.authenticated()
        peer.send(MESSAGE.replace("joe@falcot.com", "carol@example.net"))
        self.assertEqual(peer.stream_error(), "host-unknown")

    def test_toComponentOnSameStream(self) -> None:
        """If the stanza is for the MUC domain on the same stream, it reaches the component."""
        net, peer = self.authenticated()
        peer.send(MESSAGE.replace("joe@falcot.com", "room@conference.falcot.com/bob").replace("chat", "groupchat"))
        self.assertIsNone(peer.stream_error())
        self.assertEqual([m["to"] for m in net.muc.received], ["room@conference.falcot.com/bob"])


class DialbackTests(SynchronousTestCase):
    def authoritative(self, net: Network) -> Peer:
        """Take the outgoing stream the manager opened to example.org's server through to
        'established' (STARTTLS, valid certificate), and return its peer."""
        [attempt] = net.attempts
        attempt.peer.send(answer_header("auth-stream"))
        attempt.peer.send(features(STARTTLS))
        attempt.peer.send(PROCEED)
        attempt.peer.send(answer_header("auth-stream-2"))
        attempt.peer.send(features(DIALBACK))
        return attempt.peer

    def test_dialbackVerifiedWithAuthoritativeServer(self) -> None:
        """
        If example.org (self-signed) sends db:result, we ask example.org's server with db:verify
        for our stream id on our outgoing stream (before that stream is authenticated); when it
        answers valid, the peer gets db:result type='valid' and its stanzas are routed.
        """
        net = Network()
        peer, session = secured(net, net.untrusted_chain())
        peer.send("<db:result from='example.org' to='falcot.com'>k3y</db:result>")
        authoritative = self.authoritative(net)
        [verify] = authoritative.named("verify")
        self.assertEqual((verify["from"], verify["to"], verify["id"], str(verify)),
                         (LOCAL, REMOTE, session.stream.stream_id, "k3y"))
        self.assertEqual(peer.named("result"), [])
        authoritative.send(f"<db:verify from='example.org' to='falcot.com' id='{session.stream.stream_id}' "
                           "type='valid'>k3y</db:verify>")
        [result] = peer.named("result")
        self.assertEqual((result["type"], result["from"], result["to"]), ("valid", LOCAL, REMOTE))
        peer.send(MESSAGE)
        self.assertEqual(len(net.joe.received), 1)
        self.assertEqual(session.security.auth, "dialback")

    def test_dialbackInvalid(self) -> None:
        """If the authoritative server says invalid, the peer gets type='invalid' and stays unauthenticated."""
        net = Network()
        peer, session = secured(net, net.untrusted_chain())
        peer.send("<db:result from='example.org' to='falcot.com'>forged</db:result>")
        authoritative = self.authoritative(net)
        authoritative.send(f"<db:verify from='example.org' to='falcot.com' id='{session.stream.stream_id}' "
                           "type='invalid'>forged</db:verify>")
        self.assertEqual(peer.named("result")[-1]["type"], "invalid")
        peer.send(MESSAGE)
        self.assertEqual(peer.stream_error(), "not-authorized")

    def test_authoritativeServerUnreachable(self) -> None:
        """If example.org's server cannot be reached, the peer gets type='error' remote-server-not-found."""
        net = Network(routes={})
        net.refuse.append(Target(REMOTE, 5269))  # no SRV records: the A/AAAA fallback, refused
        peer, _ = secured(net, net.untrusted_chain())
        peer.send("<db:result from='example.org' to='falcot.com'>k3y</db:result>")
        result = peer.named("result")[-1]
        self.assertEqual(result["type"], "error")
        self.assertEqual([c.name for e in result.elements() for c in e.elements()], ["remote-server-not-found"])

    def test_validCertificateSkipsCallback(self) -> None:
        """If the peer's certificate is valid for the claimed domain, dialback succeeds without a
        callback to its server (XEP-0344)."""
        net = Network()
        peer, session = secured(net)
        peer.send("<db:result from='example.org' to='falcot.com'>k3y</db:result>")
        self.assertEqual(peer.named("result")[-1]["type"], "valid")
        self.assertEqual(net.attempts, [])
        self.assertEqual(session.security.auth, "dialback (certificate)")

    def test_refusedWhenDisabled(self) -> None:
        """
        If [s2s] dialback = no, it is not offered nor declared, and a db:result anyway is answered
        type='error' not-allowed without any callback.
        """
        net = Network(dialback=False)
        peer, _ = net.incoming(net.untrusted_chain())
        peer.send(NO_DB_HEADER)
        self.assertNotIn("db", peer.prefixes[-1])
        peer.send(STARTTLS_REQUEST)
        peer.send(PEER_HEADER)
        self.assertEqual(offered(peer), set())
        peer.send("<db:result from='example.org' to='falcot.com'>k3y</db:result>")
        result = peer.named("result")[-1]
        self.assertEqual((result.uri, result["type"]), (NS_DIALBACK, "error"))
        self.assertEqual([c.name for e in result.elements() for c in e.elements()], ["not-allowed"])
        self.assertEqual(net.attempts, [])

    def test_answerVerifyRequests(self) -> None:
        """
        If another server asks whether a key is ours, a key computed with our secret for
        (receiving=it, originating=us, its stream id) is valid; any other key is invalid.
        """
        net = Network()
        peer, _ = net.incoming(net.untrusted_chain())
        peer.send(PEER_HEADER)
        good = dialback_key(b"s3cr3t", REMOTE, LOCAL, "their-stream")
        peer.send(f"<db:verify from='example.org' to='falcot.com' id='their-stream'>{good}</db:verify>")
        peer.send(f"<db:verify from='example.org' to='falcot.com' id='other-stream'>{good}</db:verify>")
        verdicts = [(v["type"], v["id"], v["from"], v["to"], str(v)) for v in peer.named("verify")]
        self.assertEqual(verdicts, [("valid", "their-stream", LOCAL, REMOTE, good),
                                    ("invalid", "other-stream", LOCAL, REMOTE, good)])

    def test_malformedDialback(self) -> None:
        """If a dialback element is malformed (no key), the stream ends with bad-format."""
        net = Network()
        peer, _ = secured(net, net.untrusted_chain())
        peer.send("<db:result from='example.org' to='falcot.com'/>")
        self.assertEqual(peer.stream_error(), "bad-format")

    def test_piggybackedDomain(self) -> None:
        """
        If a stream authenticated for example.org asks dialback for a second domain (XEP-0220
        §4.3) that its server confirms, stanzas from both domains are accepted.
        """
        net = Network(routes={REMOTE: ("192.0.2.7", 5269), "chat.example.org": ("192.0.2.8", 5269)})
        peer, session = secured(net)
        peer.send(external())
        peer.send(PEER_HEADER)
        net.peer_chain = net.valid_chain("chat.example.org")
        peer.send("<db:result from='chat.example.org' to='falcot.com'>k3y</db:result>")
        [attempt] = net.attempts
        attempt.peer.send(answer_header("s").replace(b"example.org", b"chat.example.org"))
        attempt.peer.send(features(STARTTLS))
        attempt.peer.send(PROCEED)
        attempt.peer.send(answer_header("s2").replace(b"example.org", b"chat.example.org"))
        attempt.peer.send(features(DIALBACK, EXTERNAL))
        attempt.peer.send(f"<db:verify from='chat.example.org' to='falcot.com' id='{session.stream.stream_id}' "
                          "type='valid'>k3y</db:verify>")
        self.assertEqual(session.authenticated, {REMOTE, "chat.example.org"})
        peer.send(MESSAGE.replace("bob@example.org", "bot@chat.example.org"))
        peer.send(MESSAGE)
        self.assertEqual(len(net.joe.received), 2)

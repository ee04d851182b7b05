"""Federation peer certificates: chains to the trust anchors, and DNS-ID / SRV-ID / XmppAddr names."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.s2s_pki import TestCA, pem, self_signed
from unirtc.xmpp.peer_identity import (
    PeerIdentityError,
    TrustStore,
    check_peer,
    load_anchors,
    match_identity,
    xmpp_addrs,
)


class IdentityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = TestCA()

    def test_dnsId(self) -> None:
        """If the certificate has a dNSName for the domain, it matches as a DNS-ID."""
        _, cert = self.ca.issue(dns=("example.org",))
        self.assertEqual(match_identity(cert, "example.org"), "DNS-ID")

    def test_wildcardDnsId(self) -> None:
        """If the dNSName is a wildcard, it matches one leftmost label only."""
        _, cert = self.ca.issue(dns=("*.example.org",))
        self.assertEqual(match_identity(cert, "chat.example.org"), "DNS-ID")
        self.assertRaises(PeerIdentityError, match_identity, cert, "example.org")
        self.assertRaises(PeerIdentityError, match_identity, cert, "a.b.example.org")

    def test_srvId(self) -> None:
        """
        If the certificate has only an SRVName for _xmpp-server.<domain>, it matches as an SRV-ID;
        one for another service (_xmpp-client) does not.
        """
        _, cert = self.ca.issue(srv=("_xmpp-server.example.org",))
        self.assertEqual(match_identity(cert, "example.org"), "SRV-ID")
        _, client = self.ca.issue(srv=("_xmpp-client.example.org",))
        self.assertRaises(PeerIdentityError, match_identity, client, "example.org")

    def test_xmppAddr(self) -> None:
        """
        If the certificate has only an XmppAddr for the domain, it matches after JID preparation
        (case folded), and never as a wildcard.
        """
        _, cert = self.ca.issue(xmpp=("Example.ORG",))
        self.assertEqual(xmpp_addrs(cert), ["Example.ORG"])
        self.assertEqual(match_identity(cert, "example.org"), "XmppAddr")
        _, wildcard = self.ca.issue(xmpp=("*.example.org",))
        self.assertRaises(PeerIdentityError, match_identity, wildcard, "chat.example.org")

    def test_commonNameIsNotAnIdentity(self) -> None:
        """If the domain is only in the subject CN (no subjectAltName), it does not match (RFC 9525)."""
        _, cert = self.ca.issue(common_name="example.org")
        self.assertRaises(PeerIdentityError, match_identity, cert, "example.org")

    def test_otherDomain(self) -> None:
        """If the certificate names other domains only, the error says which domain was wanted."""
        _, cert = self.ca.issue(dns=("example.net",), xmpp=("example.net",))
        with self.assertRaises(PeerIdentityError) as raised:
            match_identity(cert, "example.org")
        self.assertIn("example.org", str(raised.exception))

    def test_ipLiteralDomain(self) -> None:
        """If the domain is an IP literal, DNS and SRV names are skipped and only XmppAddr can match."""
        _, cert = self.ca.issue(xmpp=("192.0.2.1",))
        self.assertEqual(match_identity(cert, "192.0.2.1"), "XmppAddr")


class ChainTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = TestCA()
        self.store = TrustStore([self.ca.certificate])

    def test_validChain(self) -> None:
        """If a leaf issued by a trusted CA names the domain, the peer is valid and the ID is said."""
        _, cert = self.ca.issue(dns=("example.org",))
        verdict = check_peer(self.store, [cert], "example.org", self.ca.now)
        self.assertTrue(verdict.valid, verdict.reason)
        self.assertEqual(verdict.identity, "DNS-ID")

    def test_intermediate(self) -> None:
        """If the peer sends leaf and intermediate, the chain verifies; without the intermediate it does not."""
        sub = self.ca.intermediate()
        _, cert = sub.issue(dns=("example.org",))
        self.assertTrue(check_peer(self.store, [cert, sub.certificate], "example.org", self.ca.now).valid)
        verdict = check_peer(self.store, [cert], "example.org", self.ca.now)
        self.assertFalse(verdict.valid)
        self.assertIn("not trusted", verdict.reason)

    def test_untrustedCa(self) -> None:
        """If the leaf comes from a CA that is not an anchor, the peer is not valid."""
        _, cert = TestCA("another CA").issue(dns=("example.org",))
        self.assertFalse(check_peer(self.store, [cert], "example.org", self.ca.now).valid)

    def test_selfSignedAsAnchor(self) -> None:
        """If a peer's self-signed certificate is listed as an anchor, it verifies; unlisted, it does not."""
        _, cert = self_signed("example.org")
        self.assertFalse(check_peer(self.store, [cert], "example.org", self.ca.now).valid)
        self.assertTrue(check_peer(TrustStore([cert]), [cert], "example.org", self.ca.now).valid)

    def test_expiredAndNotYetValid(self) -> None:
        """If ``now`` is past the leaf's end or before its start, the chain is refused."""
        _, cert = self.ca.issue(dns=("example.org",), days=1)
        self.assertTrue(check_peer(self.store, [cert], "example.org", self.ca.now).valid)
        later = self.ca.now + timedelta(days=2)
        self.assertIn("expired", check_peer(self.store, [cert], "example.org", later).reason)
        earlier = self.ca.now - timedelta(days=1)
        self.assertFalse(check_peer(self.store, [cert], "example.org", earlier).valid)

    def test_wrongName(self) -> None:
        """If the chain is trusted but names another domain, the verdict says so."""
        _, cert = self.ca.issue(dns=("example.net",))
        verdict = check_peer(self.store, [cert], "example.org", self.ca.now)
        self.assertFalse(verdict.valid)
        self.assertIn("does not name example.org", verdict.reason)

    def test_noCertificate(self) -> None:
        """If the peer sent no certificate, the verdict is invalid and says so."""
        self.assertEqual(check_peer(self.store, [], "example.org", self.ca.now).reason, "the peer sent no certificate")

    def test_systemStoreDoesNotTrustTestCa(self) -> None:
        """If only the system store is used, a test CA's leaf is not trusted."""
        _, cert = self.ca.issue(dns=("example.org",))
        self.assertFalse(check_peer(TrustStore(system=True), [cert], "example.org", self.ca.now).valid)


class AnchorFileTests(SynchronousTestCase):
    def test_loadBundle(self) -> None:
        """If [tls] ca holds several PEM certificates, all are read."""
        path = Path(self.mktemp())
        first, second = TestCA("one"), TestCA("two")
        path.write_bytes(pem(first.certificate) + b"\n" + pem(second.certificate))
        self.assertEqual(load_anchors(path), [first.certificate, second.certificate])

    def test_badFiles(self) -> None:
        """If the file is missing, not PEM, or oversized, PeerIdentityError names the file."""
        missing = Path(self.mktemp())
        with self.assertRaises(PeerIdentityError) as raised:
            load_anchors(missing)
        self.assertIn(str(missing), str(raised.exception))
        garbage = Path(self.mktemp())
        garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
        self.assertRaises(PeerIdentityError, load_anchors, garbage)
        empty = Path(self.mktemp())
        empty.write_bytes(b"hello")
        self.assertRaises(PeerIdentityError, load_anchors, empty)
        huge = Path(self.mktemp())
        huge.write_bytes(b"x" * (4 * 1024 * 1024 + 1))
        self.assertRaises(PeerIdentityError, load_anchors, huge)

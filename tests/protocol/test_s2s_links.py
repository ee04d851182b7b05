"""Outgoing federation links over scripted peers: negotiation, queueing, bounces, reuse, idle close."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.s2s_helpers import (
    DIALBACK,
    EXTERNAL,
    LOCAL,
    PROCEED,
    REMOTE,
    STARTTLS,
    Attempt,
    Network,
    answer_header,
    features,
)
from tests.s2s_pki import TestCA, write_pair
from unirtc.config import load_settings
from unirtc.plugin import PluginContext
from unirtc.xmpp.dialback import dialback_key
from unirtc.tls import CertificateFiles
from unirtc.xmpp.resolver import Target
from unirtc.xmpp.router import Router
from unirtc.xmpp.s2s import S2STLS, _select_alpn
from unirtc.xmpp.s2s_links import LinkManager
from unirtc.xmpp.s2s_service import make_s2s_services


class LogCapture:
    """Collects formatted unirtc log lines while a test runs."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.lines: list[tuple[LogLevel, str]] = []
        globalLogPublisher.addObserver(self.observe)
        test.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict) -> None:
        if str(event.get("log_namespace", "")).startswith("unirtc.xmpp.s2s"):
            self.lines.append((event["log_level"], formatEvent(event)))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def route(net: Network, *bodies: str, to: str = "bob@example.org") -> None:
    for body in bodies:
        net.router.route(net.message(to=to, body=body), net.joe)


def to_tls(attempt: Attempt) -> None:
    """Answer our header, require STARTTLS, and proceed."""
    attempt.peer.send(answer_header("s1"))
    attempt.peer.send(features(STARTTLS))
    assert attempt.peer.last().name == "starttls", attempt.peer.elements()
    attempt.peer.send(PROCEED)


def bounced(net: Network) -> list[tuple[str, str]]:
    """(condition, original recipient) of the errors joe received."""
    out = []
    for stanza in net.joe.received:
        if stanza.getAttribute("type") == "error":
            condition = next(c.name for e in stanza.elements() if e.name == "error" for c in e.elements()
                             if c.name != "text")
            out.append((condition, stanza["from"]))
    return out


def bodies(attempt: Attempt) -> list[str]:
    return [str(m.body) for m in attempt.peer.named("message")]


class ExternalLinkTests(SynchronousTestCase):
    def test_queuedUntilExternalThenInOrder(self) -> None:
        """
        If joe sends three messages to example.org, one link is made via the static route; our
        header has no id and declares xmlns:db; after STARTTLS (SNI example.org) and SASL EXTERNAL
        with authzid falcot.com, the stream restarts and the messages go out in order.
        """
        net = Network()
        logs = LogCapture(self)
        route(net, "one", "two", "three")
        [attempt] = net.attempts
        self.assertEqual(attempt.target, Target("192.0.2.7", 5269, False, "static route [s2s] hosts"))
        header = attempt.peer.header
        self.assertEqual((header["from"], header["to"], header.get("id")), (LOCAL, REMOTE, None))
        self.assertEqual(attempt.peer.prefixes[-1]["db"], "jabber:server:dialback")
        to_tls(attempt)
        self.assertEqual(attempt.transport.tls_creator, "client-creator:example.org")
        self.assertEqual(len(attempt.peer.headers), 2)
        attempt.peer.send(answer_header("s2"))
        attempt.peer.send(features(EXTERNAL, DIALBACK))
        auth = attempt.peer.last()
        self.assertEqual((auth.name, auth["mechanism"], str(auth)),
                         ("auth", "EXTERNAL", base64.b64encode(b"falcot.com").decode()))
        self.assertEqual(bodies(attempt), [])
        attempt.peer.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        self.assertEqual(len(attempt.peer.headers), 3)
        attempt.peer.send(answer_header("s3"))
        attempt.peer.send(features())
        self.assertEqual(bodies(attempt), ["one", "two", "three"])
        route(net, "four")
        self.assertEqual(bodies(attempt), ["one", "two", "three", "four"])
        self.assertEqual(len(net.attempts), 1)
        [status] = net.manager.status()
        self.assertEqual((status.direction, status.state, status.security, status.queued),
                         ("outgoing", "ready", "TLS, certificate verified, SASL EXTERNAL", 0))
        self.assertIn("falcot.com->example.org outgoing link ready via 192.0.2.7:5269 (static route [s2s] hosts, "
                      "STARTTLS) (TLS, certificate verified, SASL EXTERNAL); sending 3 queued stanzas", logs.text())

    def test_s2sReadyEvent(self) -> None:
        """If a link becomes ready, plugins get s2s-ready with both domains and the security."""
        net = Network()
        events = []
        net.bus.add("s2s-ready", events.append)
        route(net, "one")
        [attempt] = net.attempts
        to_tls(attempt)
        attempt.peer.send(answer_header("s2"))
        attempt.peer.send(features(DIALBACK))
        attempt.peer.send("<db:result from='example.org' to='falcot.com' type='valid'/>")
        [event] = events
        self.assertEqual((event.local, event.remote, event.direction, event.security.auth),
                         (LOCAL, REMOTE, "outgoing", "dialback"))

    def test_componentDomainHasItsOwnLink(self) -> None:
        """If the MUC domain sends to example.org, that pair gets its own link, from conference.falcot.com."""
        net = Network()
        route(net, "one")
        net.router.route(net.message(sender="room@conference.falcot.com/joe", body="groupchat"), None)
        self.assertEqual([a.peer.header["from"] for a in net.attempts], [LOCAL, "conference.falcot.com"])


class DialbackLinkTests(SynchronousTestCase):
    def test_dialbackWhenCertificateUntrusted(self) -> None:
        """
        If example.org's certificate is self-signed and it offers only dialback, we send db:result
        with the XEP-0185 key for (example.org, falcot.com, its stream id), and deliver on valid.
        """
        net = Network()
        net.peer_chain = net.untrusted_chain()
        route(net, "one")
        [attempt] = net.attempts
        to_tls(attempt)
        attempt.peer.send(answer_header("their-id"))
        attempt.peer.send(features(DIALBACK))
        result = attempt.peer.last()
        self.assertEqual((result.name, result["from"], result["to"]), ("result", LOCAL, REMOTE))
        self.assertEqual(str(result), dialback_key(b"s3cr3t", REMOTE, LOCAL, "their-id"))
        attempt.peer.send("<db:result from='example.org' to='falcot.com' type='valid'/>")
        self.assertEqual(bodies(attempt), ["one"])
        self.assertEqual(net.manager.status()[0].security, "TLS, certificate not verified, dialback")

    def test_externalRefusedFallsBackToDialback(self) -> None:
        """If the peer refuses our EXTERNAL, dialback is tried on the same stream."""
        net = Network()
        route(net, "one")
        [attempt] = net.attempts
        to_tls(attempt)
        attempt.peer.send(answer_header("their-id"))
        attempt.peer.send(features(EXTERNAL, DIALBACK))
        attempt.peer.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        self.assertEqual(attempt.peer.last().name, "result")

    def test_dialbackRefusedByPeer(self) -> None:
        """If the peer answers our key invalid, queued stanzas bounce with remote-server-not-found."""
        net = Network()
        route(net, "one")
        [attempt] = net.attempts
        to_tls(attempt)
        attempt.peer.send(answer_header("their-id"))
        attempt.peer.send(features(DIALBACK))
        attempt.peer.send("<db:result from='example.org' to='falcot.com' type='invalid'/>")
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")])
        self.assertEqual(net.manager.outgoing, {})


class RefusalTests(SynchronousTestCase):
    def test_untrustedCertificateWithoutDialback(self) -> None:
        """
        If example.org's certificate is not valid and [s2s] dialback = no, the link is refused
        with a log line naming the setting, the stanza bounces, and no key is sent.
        """
        net = Network(dialback=False)
        logs = LogCapture(self)
        net.peer_chain = net.untrusted_chain()
        route(net, "one")
        [attempt] = net.attempts
        to_tls(attempt)
        attempt.peer.send(answer_header("their-id"))
        self.assertEqual(attempt.peer.stream_error(), "policy-violation")
        self.assertEqual(attempt.peer.named("result"), [])
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")])
        self.assertIn("the certificate of example.org is not valid", logs.text())
        self.assertIn("[s2s] dialback = no", logs.text())

    def test_noStarttls(self) -> None:
        """If the peer offers no STARTTLS while encryption is required, the link is refused."""
        net = Network()
        logs = LogCapture(self)
        route(net, "one")
        [attempt] = net.attempts
        attempt.peer.send(answer_header("s1"))
        attempt.peer.send(features(DIALBACK))
        self.assertEqual(attempt.peer.named("result"), [])
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")])
        self.assertIn("does not offer STARTTLS and [s2s] require_encryption = yes", logs.text())

    def test_plaintextWhenAllowed(self) -> None:
        """If encryption is optional and the peer offers no STARTTLS, dialback runs in the clear."""
        net = Network(require_encryption=False)
        route(net, "one")
        [attempt] = net.attempts
        attempt.peer.send(answer_header("s1"))
        attempt.peer.send(features(DIALBACK))
        self.assertEqual(attempt.peer.last().name, "result")
        attempt.peer.send("<db:result from='example.org' to='falcot.com' type='valid'/>")
        self.assertEqual(net.manager.status()[0].security, "no TLS, certificate not verified, dialback")


class FailureTests(SynchronousTestCase):
    def test_unreachableBouncesNotFound(self) -> None:
        """
        If every target refuses the connection, each attempt is logged and every queued stanza is
        bounced to its sender with remote-server-not-found; a new stanza starts a new link.
        """
        net = Network(routes={})
        logs = LogCapture(self)
        net.refuse.append(Target(REMOTE, 5269))
        route(net, "one", "two")
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")] * 2)
        self.assertIn("attempt 1: connecting to example.org:5269 (A/AAAA fallback, STARTTLS)", logs.text())
        self.assertIn("giving up after 1 attempt(s)", logs.text())
        self.assertEqual(net.manager.outgoing, {})

    def test_nextTargetAfterFailure(self) -> None:
        """If the first SRV target refuses, the next one is tried."""
        net = Network(routes={})
        first, second = Target("a.example.org", 5269), Target("b.example.org", 5269)
        net.manager.resolver.resolve = lambda domain: succeed([first, second])
        net.refuse.append(first)
        route(net, "one")
        self.assertEqual([a.target for a in net.attempts], [second])
        self.assertEqual(bounced(net), [])

    def test_setupTimeoutBouncesTimeout(self) -> None:
        """If the peer never completes the negotiation, stanzas bounce with remote-server-timeout."""
        net = Network(setup_timeout=30)
        route(net, "one")
        [attempt] = net.attempts
        attempt.peer.send(answer_header("s1"))
        net.clock.advance(31)
        self.assertEqual(bounced(net), [("remote-server-timeout", "bob@example.org")])
        self.assertTrue(attempt.transport.disconnecting)

    def test_connectionLostBeforeReady(self) -> None:
        """If the connection drops during negotiation and no target is left, the stanza bounces."""
        net = Network()
        route(net, "one")
        [attempt] = net.attempts
        attempt.peer.lose()
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")])

    def test_resolutionFailure(self) -> None:
        """If the domain says it has no XMPP service (SRV '.'), the stanza bounces at once."""
        net = Network(routes={})
        net.dns.lookupService = lambda name: succeed(
            ([dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(0, 0, 0, ""))], [], []))
        route(net, "one")
        self.assertEqual(bounced(net), [("remote-server-not-found", "bob@example.org")])
        self.assertEqual(net.attempts, [])

    def test_queueLimit(self) -> None:
        """If more stanzas wait than the queue holds, the extra ones bounce with resource-constraint."""
        net = Network()
        net.manager.max_queue = 2
        route(net, "one", "two", "three")
        self.assertEqual(bounced(net), [("resource-constraint", "bob@example.org")])

    def test_strangerSenderDropped(self) -> None:
        """If a stanza for a remote domain is not from one of our domains, it is not sent anywhere."""
        net = Network()
        message = net.message(sender="eve@example.net", to="bob@example.org")
        net.router.route(message, None)
        self.assertEqual(net.attempts, [])


class ReuseTests(SynchronousTestCase):
    def ready(self, net: Network) -> Attempt:
        route(net, "one")
        attempt = net.attempts[-1]
        to_tls(attempt)
        attempt.peer.send(answer_header("s2"))
        attempt.peer.send(features(DIALBACK))
        attempt.peer.send("<db:result from='example.org' to='falcot.com' type='valid'/>")
        return attempt

    def test_idleLinkClosedThenReopened(self) -> None:
        """
        If a ready link carries nothing for the idle timeout, it is closed; traffic keeps it open;
        the next stanza after closing makes a new link.
        """
        net = Network(idle_timeout=100)
        attempt = self.ready(net)
        net.clock.advance(60)
        route(net, "two")
        net.clock.advance(60)
        self.assertFalse(attempt.transport.disconnecting)
        net.clock.advance(41)
        self.assertTrue(attempt.transport.disconnecting)
        self.assertTrue(attempt.peer.closed)
        self.assertEqual(net.manager.outgoing, {})
        self.ready(net)
        self.assertEqual(len(net.attempts), 2)

    def test_peerClosesReadyLink(self) -> None:
        """If the peer closes a ready link, it is forgotten and the next stanza makes a new one."""
        net = Network()
        attempt = self.ready(net)
        attempt.peer.send("</stream:stream>")
        self.assertEqual(net.manager.outgoing, {})
        route(net, "two")
        self.assertEqual(len(net.attempts), 2)

    def test_verifyGoesOutBeforeAuthentication(self) -> None:
        """
        If a dialback verification is requested while our link to that domain negotiates, the
        db:verify is sent once the stream is secured, before our own authentication, and the
        answer resolves the request.
        """
        net = Network()
        verdicts = []
        net.manager.verify(LOCAL, REMOTE, "their-stream", "k3y").addCallback(verdicts.append)
        [attempt] = net.attempts
        self.assertEqual(attempt.peer.named("verify"), [])
        to_tls(attempt)
        self.assertEqual(attempt.peer.named("verify"), [])
        attempt.peer.send(answer_header("s2"))
        attempt.peer.send(features(DIALBACK))
        [verify] = attempt.peer.named("verify")
        self.assertEqual((verify["id"], str(verify)), ("their-stream", "k3y"))
        attempt.peer.send("<db:verify from='example.org' to='falcot.com' id='their-stream' type='valid'>k3y</db:verify>")
        self.assertEqual(verdicts, ["valid"])


class ServiceTests(SynchronousTestCase):
    def test_servicesAndHook(self) -> None:
        """
        If [xmpp] s2s is set, make_s2s_services gives s2s-links and an s2s listener on its port;
        route/remote is hooked only while the links service runs.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n[xmpp]\ns2s = tcp:15269\n"
                                      "[s2s]\nhosts = example.org=127.0.0.1:25269\n")
        settings = load_settings(folder / "u.ini")
        reactor = MemoryReactorClock()
        context = PluginContext(settings=settings, directory=SimpleNamespace(), reactor=reactor)
        router = Router({"falcot.com"}, context.bus, lambda *a: True)
        services = make_s2s_services(settings, context, SimpleNamespace(files=None), router, set(), reactor)
        self.assertEqual([s.name for s in services], ["s2s-links", "s2s"])
        for service in services:
            service.privilegedStartService()
            service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [15269])
        self.assertTrue(context.bus.has("route/remote"))
        [manager] = context.items.get("s2s-links")
        self.assertIsInstance(manager, LinkManager)
        self.assertEqual(manager.resolver.static, {"example.org": ("127.0.0.1", 25269)})
        for service in services:
            service.stopService()
        self.assertFalse(context.bus.has("route/remote"))

    def test_badCaFileStopsStartup(self) -> None:
        """If [tls] ca names a file that is not PEM, building the services exits with status 1."""
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "ca.pem").write_text("not a certificate")
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n[tls]\nca = ca.pem\n")
        settings = load_settings(folder / "u.ini")
        context = PluginContext(settings=settings, directory=SimpleNamespace(), reactor=MemoryReactorClock())
        router = Router({"falcot.com"}, context.bus, lambda *a: True)
        with self.assertRaises(SystemExit) as raised:
            make_s2s_services(settings, context, SimpleNamespace(files=None), router, set(), MemoryReactorClock())
        self.assertEqual(raised.exception.code, 1)



class TLSTests(SynchronousTestCase):
    """S2STLS over a real in-memory TLS handshake (two pyOpenSSL connections, no sockets)."""

    def handshake(self, offer_alpn: bool) -> tuple[Any, Any]:
        folder = Path(self.mktemp())
        ca = TestCA()
        ours = S2STLS(CertificateFiles(*write_pair(folder, "falcot", *_pair(ca, "falcot.com"))))
        theirs = S2STLS(CertificateFiles(*write_pair(folder, "example", *_pair(ca, "example.org"))))
        server = ours.server().serverConnectionForTLS(None)
        server.set_accept_state()
        client = theirs.client("falcot.com", direct_tls=offer_alpn).clientConnectionForTLS(None)
        client.set_connect_state()
        for _ in range(10):
            for source, sink in ((client, server), (server, client)):
                try:
                    source.do_handshake()
                except SSL.WantReadError:
                    pass
                try:
                    sink.bio_write(source.bio_read(65536))
                except SSL.WantReadError:
                    pass
        return server, client

    def test_clientCertificateAndAlpn(self) -> None:
        """
        If a peer connects with its certificate and offers ALPN xmpp-server (as Prosody does even
        on STARTTLS), the handshake completes, xmpp-server is selected, each side sees the other's
        certificate, and the client sent SNI for the remote domain.
        """
        server, client = self.handshake(offer_alpn=True)
        self.assertEqual(server.get_alpn_proto_negotiated(), b"xmpp-server")
        self.assertEqual(server.get_servername(), b"falcot.com")
        peer = server.get_peer_certificate(as_cryptography=True)
        self.assertIn("example.org", str(peer.extensions))
        self.assertIn("falcot.com", str(client.get_peer_certificate(as_cryptography=True).extensions))

    def test_noAlpn(self) -> None:
        """If the peer offers no ALPN, the handshake completes with no protocol negotiated."""
        server, client = self.handshake(offer_alpn=False)
        self.assertEqual(server.get_alpn_proto_negotiated(), b"")
        self.assertIsNotNone(server.get_peer_certificate())

    def test_alpnSelection(self) -> None:
        """If a peer offers other protocols only, nothing is selected (not an empty protocol)."""
        self.assertEqual(_select_alpn(None, [b"h2", b"xmpp-server"]), b"xmpp-server")
        self.assertIs(_select_alpn(None, [b"h2"]), SSL.NO_OVERLAPPING_PROTOCOLS)


def _pair(ca: Any, domain: str) -> tuple[Any, list[Any]]:
    key, certificate = ca.issue(dns=(domain,))
    return key, [certificate]

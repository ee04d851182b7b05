"""Client streams over StringTransport: headers, stream errors, STARTTLS, binding, timeouts."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import HEADER, Client, FakeServer
from unirtc.xmpp.service import SessionsService

CORPUS = Path(__file__).parent.parent / "corpora" / "xml_attacks"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


class Bystanders:
    """Two logged-in users who must keep chatting whatever another connection does."""

    def setUp(self) -> None:
        self.server = FakeServer(max_stanza=20000)
        self.joe = self.server.login("joe", "laptop")
        self.roland = self.server.login("roland", "phone")
        self.roland.send("<presence/>")
        self.roland.clear()

    def assertBystandersChat(self) -> None:
        self.joe.send("<message to='roland@falcot.com' type='chat' id='m1'><body>still here?</body></message>")
        messages = [e for e in self.roland.elements() if e.name == "message"]
        self.assertEqual([str(m.body) for m in messages], ["still here?"])
        self.assertEqual(messages[0]["from"], "joe@falcot.com/laptop")
        self.assertFalse(self.joe.disconnected)


class StreamHeaderTests(Bystanders, SynchronousTestCase):
    def test_headerAnsweredWithFeatures(self) -> None:
        """
        If a client opens a stream to the served domain, the server answers with its own header
        (from the domain, version 1.0, an id) and features offering required STARTTLS only.
        """
        client = self.server.connect()
        client.open()
        self.assertEqual(client.header["from"], "falcot.com")
        self.assertEqual(client.header["version"], "1.0")
        self.assertGreaterEqual(len(client.header["id"]), 16)
        features = client.last()
        self.assertEqual(features.name, "features")
        starttls = next(features.elements(NS_TLS, "starttls"))
        self.assertEqual([c.name for c in starttls.elements()], ["required"])
        self.assertEqual([c.name for c in features.elements()], ["starttls"])

    def test_unknownHostIsHostUnknown(self) -> None:
        """
        If the stream header names a domain this server does not serve, or none, the client gets
        host-unknown and is disconnected; other sessions keep working.
        """
        for to in (b" to='example.org'", b""):
            client = self.server.connect()
            client.open(HEADER.replace(b" to='falcot.com'", to))
            self.assertEqual(client.stream_error(), "host-unknown")
            self.assertTrue(client.disconnected)
        self.assertBystandersChat()

    def test_missingVersionIsUnsupported(self) -> None:
        """
        If the header has no version (a pre-RFC 6120 client), the stream error is unsupported-version.
        """
        client = self.server.connect()
        client.open(HEADER.replace(b"'falcot.com' version='1.0'", b"'falcot.com'"))
        self.assertEqual(client.stream_error(), "unsupported-version")

    def test_wrongNamespaceIsInvalidNamespace(self) -> None:
        """
        If the stream's content namespace is not jabber:client, the error is invalid-namespace.
        """
        client = self.server.connect()
        client.open(HEADER.replace(b"jabber:client", b"jabber:server"))
        self.assertEqual(client.stream_error(), "invalid-namespace")
        self.assertTrue(client.disconnected)


class HostileInputTests(Bystanders, SynchronousTestCase):
    def hostile(self, data: bytes, condition: str, before_header: bool = False) -> Client:
        client = self.server.connect()
        if not before_header:
            client.open()
        client.send(data)
        self.assertEqual(client.stream_error(), condition)
        self.assertTrue(client.disconnected)
        self.assertBystandersChat()
        return client

    def test_billionLaughsIsRestrictedXml(self) -> None:
        """
        If a client sends the billion-laughs DOCTYPE, it gets restricted-xml and nothing is expanded;
        the logged-in users keep chatting.
        """
        client = self.hostile((CORPUS / "defusedxml_xmlbomb.xml").read_bytes(), "restricted-xml", True)
        self.assertLess(len(client.raw), 2000)

    def test_entityReferenceInStanzaIsRestrictedXml(self) -> None:
        """
        If a stanza uses an undeclared entity, the client gets restricted-xml.
        """
        self.hostile(b"<message><body>&xxe;</body></message>", "restricted-xml")

    def test_commentIsRestrictedXml(self) -> None:
        """
        If a client sends a comment between stanzas, it gets restricted-xml.
        """
        self.hostile(b"<!-- hello -->", "restricted-xml")

    def test_garbageIsNotWellFormed(self) -> None:
        """
        If a client sends binary garbage (e.g. a TLS ClientHello on the STARTTLS port), it gets
        not-well-formed.
        """
        self.hostile(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not-well-formed", True)

    def test_oversizedStanzaIsPolicyViolation(self) -> None:
        """
        If a stanza grows past max_stanza_size, the client gets policy-violation before the stanza
        ends, and the server never buffers the rest.
        """
        client = self.server.login("attacker", "x")
        client.send(b"<message to='roland@falcot.com'><body>" + b"A" * 30000)
        self.assertEqual(client.stream_error(), "policy-violation")
        self.assertTrue(client.disconnected)
        self.assertEqual([e for e in self.roland.elements() if e.name == "message"], [])
        self.assertBystandersChat()

    def test_unboundPrefixIsBadNamespacePrefix(self) -> None:
        """
        If a stanza uses a namespace prefix that was never declared, the client gets
        bad-namespace-prefix.
        """
        self.hostile(b"<foo:message to='roland@falcot.com'/>", "bad-namespace-prefix")

    def test_tenMegabyteStanzaIsPolicyViolation(self) -> None:
        """
        If a client sends a 10 MB stanza in one go before logging in, it gets policy-violation (and
        the logged-in users keep chatting).
        """
        self.hostile(b"<message><body>" + b"B" * 10_000_000 + b"</body></message>", "policy-violation")

    def test_spoofedFromIsInvalidFrom(self) -> None:
        """
        If a bound client claims another user's address in 'from', it gets invalid-from and the
        stanza is not delivered.
        """
        client = self.server.login("mallory", "x")
        client.send("<message from='joe@falcot.com/laptop' to='roland@falcot.com'><body>hi</body></message>")
        self.assertEqual(client.stream_error(), "invalid-from")
        self.assertEqual([e for e in self.roland.elements() if e.name == "message"], [])
        self.assertBystandersChat()

    def test_ownAddressInFromIsAccepted(self) -> None:
        """
        If a client puts its own bare or full JID in 'from', the stanza goes out stamped with its
        full JID.
        """
        for claimed in ("joe@falcot.com", "joe@falcot.com/laptop"):
            self.joe.send(f"<message from='{claimed}' to='roland@falcot.com'><body>x</body></message>")
        froms = [m["from"] for m in self.roland.elements() if m.name == "message"]
        self.assertEqual(froms, ["joe@falcot.com/laptop"] * 2)

    def test_unknownTopLevelElementIsUnsupportedStanzaType(self) -> None:
        """
        If a bound client sends a top-level element no plugin handles, it gets unsupported-stanza-type.
        """
        client = self.server.login("mallory", "x")
        client.send("<enable xmlns='urn:xmpp:sm:3'/>")
        self.assertEqual(client.stream_error(), "unsupported-stanza-type")
        self.assertBystandersChat()


class TlsAndAuthOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()

    def test_authBeforeTlsIsRefused(self) -> None:
        """
        If a client tries SASL before STARTTLS, it gets the SASL failure encryption-required and no
        directory lookup happens.
        """
        self.server.directory.add("joe", "secret")
        client = self.server.connect()
        client.open()
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGpvZQBzZWNyZXQ=</auth>")
        failure = client.last()
        self.assertEqual((failure.name, [c.name for c in failure.elements()]), ("failure", ["encryption-required"]))
        self.assertEqual(self.server.directory.lookups, [])

    def test_stanzaBeforeAuthIsNotAuthorized(self) -> None:
        """
        If a client sends a stanza before authenticating, it gets the stream error not-authorized.
        """
        client = self.server.connect()
        client.open()
        client.send("<message to='joe@falcot.com'><body>x</body></message>")
        self.assertEqual(client.stream_error(), "not-authorized")

    def test_starttlsProceedsAndRestarts(self) -> None:
        """
        If a client sends <starttls/>, the server answers <proceed/>, starts TLS with the
        certificate service, and offers SASL mechanisms (with -PLUS and PLAIN) on the new stream.
        """
        client = self.server.connect()
        client.open()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(client.last().name, "proceed")
        self.assertIs(client.transport.tls_creator, self.server.tls_creator)
        client.restarted()
        client.open()
        mechanisms = next(client.last().elements("urn:ietf:params:xml:ns:xmpp-sasl", "mechanisms"))
        names = [str(m) for m in mechanisms.elements()]
        self.assertEqual(names[:2], ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
        self.assertIn("PLAIN", names)

    def test_dataPipelinedAfterStarttlsIsDiscarded(self) -> None:
        """
        If plaintext follows <starttls/> in the same packet (a command-injection attempt), whether
        it parses as a stanza or would be a stream error, it is discarded rather than processed
        as if it came over TLS, and the TLS stream starts clean.
        """
        self.server.directory.add("joe", "secret")
        auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGpvZQBzZWNyZXQ=</auth>"
        for injected in (auth, HEADER.decode() + auth):
            client = self.server.connect()
            client.open()
            client.send(f"<starttls xmlns='{NS_TLS}'/>" + injected)
            self.assertEqual(client.last().name, "proceed")
            self.assertEqual(self.server.directory.lookups, [])
            self.assertFalse(client.disconnected)
            client.restarted()
            client.open()
            self.assertEqual(client.last().name, "features")

    def test_secondStarttlsFails(self) -> None:
        """
        If a client asks for STARTTLS on a stream that is already encrypted, it gets the TLS
        <failure/> and the stream is closed.
        """
        client = self.server.connect()
        client.open()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        client.restarted()
        client.open()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        self.assertEqual(client.last().name, "failure")
        self.assertTrue(client.disconnected)


class BindTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()

    def test_requestedAndGeneratedResources(self) -> None:
        """
        If a client asks for a resource it gets it (prepared); if it asks for none, the server makes
        one up, and both sessions are routable.
        """
        first = self.server.login("joe", "Laptop")
        self.assertEqual(first.stream.session.jid.full, "joe@falcot.com/Laptop")
        client = self.server.login("joe", "Cafe\u0301")  # PRECIS OpaqueString: NFC
        self.assertEqual(client.stream.session.jid.resource, "Caf\u00e9")
        generated = self.server.login("joe", None)
        resource = generated.stream.session.jid.resource
        self.assertGreaterEqual(len(resource), 8)
        self.assertEqual(len(self.server.router.sessions_of(first.stream.session.jid)), 3)

    def test_conflictReplacesOldSession(self) -> None:
        """
        If a second connection binds the same full JID, the old one gets the conflict stream error
        and the new one receives the messages.
        """
        old = self.server.login("joe", "laptop")
        new = self.server.login("joe", "laptop")
        self.assertEqual(old.stream_error(), "conflict")
        self.assertTrue(old.disconnected)
        roland = self.server.login("roland", "phone")
        roland.send("<message to='joe@falcot.com/laptop'><body>which?</body></message>")
        self.assertEqual([str(m.body) for m in new.elements() if m.name == "message"], ["which?"])
        old.lose()
        self.assertIs(self.server.router.session(new.stream.session.jid), new.stream.session)

    def test_replacedSessionEndsAtOnce(self) -> None:
        """
        If an available session is replaced, its unavailable presence and session-ended go out when
        the new session binds, not when the old TCP connection finally closes, so they can never
        follow the new session's own presence.
        """
        watcher = self.server.login("joe", "phone")
        watcher.send("<presence/>")
        old = self.server.login("joe", "laptop")
        old.send("<presence/>")
        watcher.clear()
        ended = []
        self.server.bus.add("session-ended", lambda event: ended.append(event.session))
        new = self.server.login("joe", "laptop")
        presences = [(p["from"], p.getAttribute("type")) for p in watcher.elements() if p.name == "presence"]
        self.assertEqual(presences, [("joe@falcot.com/laptop", "unavailable")])
        self.assertEqual(ended, [old.stream.session])
        old.lose()
        self.assertEqual(len(ended), 1)
        self.assertIs(self.server.router.session(new.stream.session.jid), new.stream.session)

    def test_invalidResourceIsBadRequest(self) -> None:
        """
        If the requested resource is not a valid resourcepart, the bind IQ fails with bad-request and
        the client may try again.
        """
        self.server.directory.add("joe", "secret")
        client = self.server.connect()
        client.open()
        client.send(f"<starttls xmlns='{NS_TLS}'/>")
        client.restarted()
        client.open()
        client.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGpvZQBzZWNyZXQ=</auth>")
        client.restarted()
        client.open()
        client.send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    f"<resource>{'r' * 1024}</resource></bind></iq>")
        reply = client.last()
        self.assertEqual(reply["type"], "error")
        self.assertEqual(next(reply.error.elements()).name, "bad-request")
        self.assertEqual(client.bind("fine"), "joe@falcot.com/fine")

    def test_legacySessionIsNoOp(self) -> None:
        """
        If a client sends the RFC 3921 session IQ after binding, it gets an empty result.
        """
        client = self.server.login("joe", "laptop")
        client.send("<iq type='set' id='s'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        reply = client.last()
        self.assertEqual((reply["type"], reply["id"], list(reply.elements())), ("result", "s", []))


class TimerTests(SynchronousTestCase):
    def test_idleLoginTimesOut(self) -> None:
        """
        If a connection has not logged in within the login timeout, it gets connection-timeout; a
        logged-in session is not affected.
        """
        server = FakeServer(login_timeout=30)
        bound = server.login("joe", "laptop")
        idle = server.connect()
        idle.open()
        server.clock.advance(29)
        self.assertIsNone(idle.stream_error())
        server.clock.advance(2)
        self.assertEqual(idle.stream_error(), "connection-timeout")
        self.assertTrue(idle.disconnected)
        self.assertFalse(bound.disconnected)

    def test_whitespaceKeepalive(self) -> None:
        """
        If the server has written nothing to a stream for a whole keepalive interval, it sends a
        single space; a busy stream gets none.
        """
        server = FakeServer()
        client = server.login("joe", "laptop")
        before = client.raw
        server.clock.advance(239)
        server.clock.advance(1)
        self.assertEqual(client.raw, before)  # the login wrote during the first interval
        server.clock.advance(240)
        self.assertEqual(client.raw, before + b" ")

    def test_abortWhenPeerIgnoresClose(self) -> None:
        """
        If a stream is closed with an error and the peer never closes its side, the connection is
        aborted after the close timeout.
        """
        server = FakeServer()
        client = server.connect()
        client.send(b"<x/>")
        self.assertTrue(client.disconnected)
        server.clock.advance(10)
        self.assertTrue(client.transport.aborted)


class CloseTests(SynchronousTestCase):
    def test_clientCloseIsAnswered(self) -> None:
        """
        If a client closes its stream, the server closes its own and the session leaves the router,
        telling the plugins (session-ended) and the user's other resources (unavailable).
        """
        server = FakeServer()
        ended = []
        server.bus.add("session-ended", lambda event: ended.append(event.session.jid.full))
        joe = server.login("joe", "laptop")
        other = server.login("joe", "phone")
        other.send("<presence/>")
        joe.send("<presence><priority>5</priority></presence>")
        other.clear()
        jid = joe.stream.session.jid
        joe.send("</stream:stream>")
        self.assertTrue(joe.raw.endswith(b"</stream:stream>"))
        self.assertTrue(joe.disconnected)
        joe.lose()
        self.assertEqual(ended, ["joe@falcot.com/laptop"])
        self.assertIsNone(server.router.session(jid))
        self.assertEqual(len(server.router.sessions_of(jid)), 1)
        presences = [e for e in other.elements() if e.name == "presence"]
        self.assertEqual([(p["from"], p.getAttribute("type")) for p in presences],
                         [("joe@falcot.com/laptop", "unavailable")])

    def test_shutdownSendsSystemShutdown(self) -> None:
        """
        If the server stops, every open stream gets system-shutdown and the stop waits for the
        connections to go (bounded by a grace period).
        """
        server = FakeServer()
        service = SessionsService(server.clock)
        service.streams = server.streams
        service.startService()
        joe = server.login("joe", "laptop")
        pending = server.connect()
        done = service.stopService()
        self.assertEqual(joe.stream_error(), "system-shutdown")
        self.assertEqual(pending.stream_error(), "system-shutdown")
        self.assertNoResult(done)
        joe.lose()
        pending.lose()
        server.clock.advance(0.1)
        self.successResultOf(done)


class PresenceTests(SynchronousTestCase):
    def test_presenceSetsAvailabilityAndPriority(self) -> None:
        """
        If a client broadcasts presence, its session becomes available with that priority, the
        presence/broadcast event fires (initial only the first time), and without a presence
        plugin the user's own available resources receive it.
        """
        server = FakeServer()
        seen = []
        server.bus.add("presence/broadcast", lambda e: seen.append(e.initial))
        joe = server.login("joe", "laptop")
        joe.send("<presence><priority>200</priority></presence>")
        session = joe.stream.session
        self.assertTrue(session.available)
        self.assertEqual(session.priority, 127)
        joe.send("<presence><show>away</show></presence>")
        self.assertEqual(session.priority, 0)
        joe.send("<presence type='unavailable'/>")
        self.assertFalse(session.available)
        self.assertEqual(seen, [True, False, False])
        self.assertEqual(len([e for e in joe.elements() if e.name == "presence"]), 3)

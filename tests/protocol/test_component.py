"""XEP-0114 components over StringTransport: handshake, routing both ways, refusals."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import Client, FakeServer
from unirtc.xmpp.component import handshake_digest

HEADER = ("<stream:stream xmlns='jabber:component:accept' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='{to}'>")


class ComponentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        self.joe = self.server.login("joe", "laptop")

    def component(self, secret: str = "s3cret", to: str = "bot.falcot.com") -> Client:
        client = self.server.connect_component()
        client.send(HEADER.format(to=to))
        if client.stream_error() is None:
            stream_id = client.header["id"]
            client.send(f"<handshake>{handshake_digest(stream_id, secret)}</handshake>")
        return client

    def test_handshakeAndRouting(self) -> None:
        """
        If a component proves the secret, it gets an empty <handshake/>, receives stanzas for its
        domain, and its stanzas reach local users with the component's address.
        """
        bot = self.component()
        self.assertEqual(bot.header["from"], "bot.falcot.com")
        self.assertEqual(bot.last().name, "handshake")
        self.joe.send("<message to='echo@bot.falcot.com' id='1'><body>ping</body></message>")
        received = bot.last()
        self.assertEqual((received.name, received["from"], str(received.body)), ("message", "joe@falcot.com/laptop", "ping"))
        self.assertNotIn(b"xmlns='jabber:client'", bot.raw)  # stanzas take the component namespace
        bot.send("<message from='echo@bot.falcot.com' to='joe@falcot.com/laptop' id='2'><body>pong</body></message>")
        answer = self.joe.last()
        self.assertEqual((answer["from"], str(answer.body)), ("echo@bot.falcot.com", "pong"))

    def test_wrongSecretIsNotAuthorized(self) -> None:
        """
        If the handshake is wrong, the component gets not-authorized and is not routable.
        """
        bot = self.component(secret="guess")
        self.assertEqual(bot.stream_error(), "not-authorized")
        self.assertNotIn("bot.falcot.com", self.server.router.components)

    def test_unknownDomainIsHostUnknown(self) -> None:
        """
        If the component asks for a domain that has no secret configured, it gets host-unknown.
        """
        self.assertEqual(self.component(to="evil.falcot.com").stream_error(), "host-unknown")

    def test_foreignFromIsInvalidFrom(self) -> None:
        """
        If an accepted component sends from an address outside its domain, it gets invalid-from and
        the stanza is not delivered; a stanza with no recipient is improper-addressing.
        """
        bot = self.component()
        bot.send("<message from='admin@falcot.com' to='joe@falcot.com/laptop'><body>x</body></message>")
        self.assertEqual(bot.stream_error(), "invalid-from")
        self.assertEqual([e for e in self.joe.elements() if e.name == "message"], [])
        bot = self.component()
        bot.send("<message from='bot.falcot.com'><body>x</body></message>")
        self.assertEqual(bot.stream_error(), "improper-addressing")

    def test_secondConnectionIsConflict(self) -> None:
        """
        If a component domain is already connected, a second connection is refused with conflict
        and the first keeps working; once the first goes, the domain is free again.
        """
        first = self.component()
        second = self.component()
        self.assertEqual(second.stream_error(), "conflict")
        self.assertIs(self.server.router.components["bot.falcot.com"], first.stream.session)
        first.lose()
        self.assertNotIn("bot.falcot.com", self.server.router.components)
        self.assertEqual(self.component().last().name, "handshake")

    def test_handshakeTimeout(self) -> None:
        """
        If a component connects but never completes the handshake, it gets connection-timeout.
        """
        client = self.server.connect_component()
        client.send(HEADER.format(to="bot.falcot.com"))
        self.server.clock.advance(31)
        self.assertEqual(client.stream_error(), "connection-timeout")

    def test_offlineComponentBouncesNothingSpecial(self) -> None:
        """
        If no component is connected for a configured domain, stanzas to it bounce like any remote
        domain (remote-server-not-found) rather than vanish.
        """
        self.joe.send("<message to='echo@bot.falcot.com' id='x'><body>x</body></message>")
        reply = self.joe.last()
        self.assertEqual((reply["type"], next(reply.error.elements()).name), ("error", "remote-server-not-found"))

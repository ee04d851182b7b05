"""XEP-0215 External Service Discovery through the real plugin manager and router."""

from __future__ import annotations

import base64
import hashlib
import hmac
from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import FakeServer
from unirtc.settings import TURNSettings
from unirtc.plugin import PluginContext, PluginManager
from unirtc.xmpp.component import handshake_digest

NS = "urn:xmpp:extdisco:2"
URIS = ("stun:turn-server.falcot.com:3467", "turn:turn-server.falcot.com:3467?transport=udp",
        "turns:turn-server.falcot.com:5349?transport=tcp")


class ExtdiscoTests(SynchronousTestCase):
    def start(self, secret: str | None = "north") -> None:
        self.server = FakeServer()
        self.server.clock.advance(1_700_000_000)
        settings = SimpleNamespace(
            server=SimpleNamespace(domain="falcot.com"),
            turn=TURNSettings(secret=secret, realm="falcot.com", ttl=3600, uris=URIS, stun=None),
        )
        context = PluginContext(settings=settings, directory=self.server.directory,
                                reactor=self.server.clock, bus=self.server.bus)
        context.items.add("xmpp-router", self.server.router)
        self.features = context.items
        manager = PluginManager(["extdisco"], (), context)
        manager.startService()
        self.addCleanup(manager.stopService)
        self.client = self.server.login("joe", "laptop")

    def ask(self, payload: str):
        self.client.send(f"<iq type='get' id='x' to='falcot.com'>{payload}</iq>")
        return self.client.last()

    def test_servicesWithWorkingCredentials(self) -> None:
        """
        If a user asks for services, it gets every configured STUN/TURN URI; TURN ones carry a
        REST username ``expiry:joe@falcot.com`` whose password is base64(HMAC-SHA1(secret, username)),
        the expiry one ttl from now, and restricted='1'. The feature is advertised.
        """
        self.start()
        self.assertIn(NS, self.features.get("feature"))
        reply = self.ask(f"<services xmlns='{NS}'/>")
        self.assertEqual(reply["type"], "result")
        services = list(next(reply.elements(NS, "services")).elements(NS, "service"))
        self.assertEqual([(s["type"], s["host"], s["port"], s["transport"]) for s in services], [
            ("stun", "turn-server.falcot.com", "3467", "udp"),
            ("turn", "turn-server.falcot.com", "3467", "udp"),
            ("turns", "turn-server.falcot.com", "5349", "tcp"),
        ])
        self.assertIsNone(services[0].getAttribute("username"))
        turn = services[1]
        self.assertEqual(turn["username"], "1700003600:joe@falcot.com")
        expected = base64.b64encode(hmac.new(b"north", turn["username"].encode(), hashlib.sha1).digest()).decode()
        self.assertEqual(turn["password"], expected)
        self.assertEqual((turn["expires"], turn["restricted"]), ("2023-11-14T23:13:20Z", "1"))

    def test_typeFilterAndCredentialsRequest(self) -> None:
        """
        If a user asks for type='turn' only, only turn services come back; a credentials request
        for a host gets that service; an unknown host is item-not-found; a bad type is bad-request.
        """
        self.start()
        services = list(next(self.ask(f"<services xmlns='{NS}' type='turn'/>").elements(NS, "services")).elements())
        self.assertEqual([s["type"] for s in services], ["turn"])
        reply = self.ask(f"<credentials xmlns='{NS}'><service host='turn-server.falcot.com' type='turns'/></credentials>")
        service = next(next(reply.elements(NS, "credentials")).elements(NS, "service"))
        self.assertEqual((service["type"], service["port"]), ("turns", "5349"))
        reply = self.ask(f"<credentials xmlns='{NS}'><service host='elsewhere.org' type='turn'/></credentials>")
        self.assertEqual(reply["type"], "error")
        self.assertIn(b"item-not-found", reply.toXml().encode())
        reply = self.ask(f"<services xmlns='{NS}' type='ftp'/>")
        self.assertIn(b"bad-request", reply.toXml().encode())
        reply = self.ask(f"<credentials xmlns='{NS}'/>")
        self.assertIn(b"bad-request", reply.toXml().encode())

    def test_noSecretMeansStunOnly(self) -> None:
        """
        If no TURN secret is configured, only STUN services are listed and no credentials exist.
        """
        self.start(secret=None)
        services = list(next(self.ask(f"<services xmlns='{NS}'/>").elements(NS, "services")).elements())
        self.assertEqual([s["type"] for s in services], ["stun"])

    def test_componentsAreRefused(self) -> None:
        """
        If a component (not one of this server's users) asks for services, it gets forbidden and
        no credentials.
        """
        self.start()
        bot = self.server.connect_component()
        bot.open(b"<stream:stream xmlns='jabber:component:accept' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' to='bot.falcot.com'>")
        bot.send(f"<handshake>{handshake_digest(bot.header['id'], 's3cret')}</handshake>")
        bot.clear()
        bot.send(f"<iq type='get' id='c' from='bot.falcot.com' to='falcot.com'><services xmlns='{NS}'/></iq>")
        reply = bot.last()
        self.assertEqual(reply["type"], "error")
        self.assertIn(b"forbidden", reply.toXml().encode())
        self.assertNotIn(b"password", reply.toXml().encode())

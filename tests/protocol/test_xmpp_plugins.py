"""The bundled XMPP plugins, loaded through the real plugin manager: ping and disco."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.xmpp_helpers import FakeServer
from unirtc.plugin import PluginContext, PluginManager

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"


class BundledPluginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = FakeServer()
        context = PluginContext(settings=SimpleNamespace(), directory=self.server.directory,
                                reactor=self.server.clock, bus=self.server.bus)
        context.items.add("xmpp-router", self.server.router)
        self.context = context
        self.manager = PluginManager(["disco", "ping"], (), context)
        self.manager.startService()
        self.addCleanup(self.manager.stopService)
        self.client = self.server.login("joe", "laptop")

    def iq(self, payload: str, to: str = "falcot.com"):
        self.client.send(f"<iq type='get' id='q' to='{to}'>{payload}</iq>")
        return self.client.last()

    def test_pingServerAndAccount(self) -> None:
        """
        If a client pings the server or its own bare JID, it gets an empty result.
        """
        for to in ("falcot.com", "joe@falcot.com"):
            reply = self.iq("<ping xmlns='urn:xmpp:ping'/>", to)
            self.assertEqual((reply["type"], reply["id"], list(reply.elements())), ("result", "q", []))

    def test_discoInfoListsFeatures(self) -> None:
        """
        If a client asks the server for disco#info, it gets identity server/im and every declared
        feature, including ping's, and a plugin's later add_feature shows up too.
        """
        self.context.items.add("feature", "urn:example:late")
        query = next(self.iq(f"<query xmlns='{NS_INFO}'/>").elements(NS_INFO, "query"))
        identity = next(query.elements(NS_INFO, "identity"))
        self.assertEqual((identity["category"], identity["type"]), ("server", "im"))
        features = {f["var"] for f in query.elements(NS_INFO, "feature")}
        self.assertEqual(features, {NS_INFO, NS_ITEMS, "urn:xmpp:ping", "urn:example:late"})

    def test_discoItemsAndNodes(self) -> None:
        """
        If a client asks for disco#items, it gets the declared disco-item entries; a node it does
        not know is item-not-found.
        """
        self.context.items.add("disco-item", ("conference.falcot.com", "Chatrooms"))
        query = next(self.iq(f"<query xmlns='{NS_ITEMS}'/>").elements(NS_ITEMS, "query"))
        self.assertEqual([(i["jid"], i["name"]) for i in query.elements(NS_ITEMS, "item")],
                         [("conference.falcot.com", "Chatrooms")])
        reply = self.iq(f"<query xmlns='{NS_INFO}' node='nope'/>")
        self.assertEqual(next(reply.error.elements()).name, "item-not-found")

    def test_accountInfo(self) -> None:
        """
        If a client asks its own bare JID for disco#info, the identity is account/registered.
        """
        query = next(self.iq(f"<query xmlns='{NS_INFO}'/>", "joe@falcot.com").elements(NS_INFO, "query"))
        identity = next(query.elements(NS_INFO, "identity"))
        self.assertEqual((identity["category"], identity["type"]), ("account", "registered"))

    def test_unloadRemovesHandlers(self) -> None:
        """
        If the plugins are unloaded, ping is no longer answered (service-unavailable).
        """
        self.manager.stopService()
        reply = self.iq("<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(next(reply.error.elements()).name, "service-unavailable")
        self.manager.startService()

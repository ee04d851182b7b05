"""make_xmpp_listeners on a memory reactor: which listeners exist, on which ports, with TLS or not."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from unirtc.config import load_settings
from unirtc.plugin import PluginContext
from unirtc.xmpp.router import Router
from unirtc.xmpp.service import StreamFactory, make_xmpp_listeners

@implementer(IOpenSSLServerConnectionCreator)
class _Certificate:
    """Stands in for CertificateService; no connection is made, so no context is needed."""

    def serverConnectionForTLS(self, protocol):  # pragma: no cover
        raise AssertionError("no TLS connection in this test")


LISTENERS = ("[xmpp]\nc2s = tcp:15222\nc2s_direct_tls = tcp:15223\ns2s =\n"
             "[components]\nlisten = tcp:15347:interface=127.0.0.1\n")


class ListenerTests(SynchronousTestCase):
    def build(self, ini: str):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text("[server]\ndomain = falcot.com\n" + ini)
        settings = load_settings(folder / "u.ini")
        reactor = MemoryReactorClock()
        context = PluginContext(settings=settings, directory=SimpleNamespace(), reactor=reactor)
        services = make_xmpp_listeners(settings, context, _Certificate(), SimpleNamespace(credentials=None), reactor)
        for service in services:
            service.privilegedStartService()
        ports = {port: factory for port, factory, *_ in reactor.tcpServers}
        return [s.name for s in services], ports, context

    def test_listenersAndRouterItem(self) -> None:
        """
        If [xmpp] and [components] are configured, there is a sessions service and c2s, c2s-tls and
        components listeners on their ports; only c2s-tls wraps TLS; plugins see the router.
        """
        names, ports, context = self.build(LISTENERS + "bot.falcot.com = s3cret\n")
        self.assertEqual(names, ["xmpp-sessions", "c2s", "c2s-tls", "components"])
        self.assertEqual(sorted(ports), [15222, 15223, 15347])
        self.assertIsInstance(ports[15222], StreamFactory)
        self.assertIsInstance(ports[15223], TLSMemoryBIOFactory)
        self.assertEqual(ports[15347].namespace, "jabber:component:accept")
        [router] = context.items.get("xmpp-router")
        self.assertIsInstance(router, Router)
        self.assertEqual(router.hosts, {"falcot.com"})

    def test_optionalListeners(self) -> None:
        """
        If [components] names no component, no component port is opened; an empty c2s_direct_tls
        means no direct-TLS listener.
        """
        names, ports, _ = self.build(LISTENERS)
        self.assertEqual((names, sorted(ports)), (["xmpp-sessions", "c2s", "c2s-tls"], [15222, 15223]))
        names, ports, _ = self.build("[xmpp]\nc2s = tcp:15222\nc2s_direct_tls =\ns2s =\n")
        self.assertEqual((names, sorted(ports)), (["xmpp-sessions", "c2s"], [15222]))

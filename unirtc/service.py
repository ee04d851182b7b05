"""Build the service tree from settings: directory, certificate, plugins, listeners.

    UnirtcService "unirtc" (stops children in reverse order, one after another)
      ├─ Directory           "directory"
      ├─ CertificateService  "certificate"
      ├─ PluginManager       "plugins"
      └─ MultiService        "listeners"  stopped together, before plugins and directory:
           admin (admin.sock), web (HTTPS: /health, /turn, /phone, WebSocket transports),
           stun-udp, stun-tcp, xmpp-sessions, c2s, c2s-tls, components, s2s-links, s2s,
           sip-bindings, sip-udp-5060, sip-tcp-5060, sip-tls-5061 (one per [sip] listen entry)
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import TCPServer, UDPServer
from twisted.application.service import IService, MultiService
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.protocols.tls import TLSMemoryBIOFactory

from unirtc.admin import admin_service
from unirtc.certificates import CertificateService
from unirtc.directory.service import Directory, SchemaBehind
from unirtc.logging import get_logger, set_level
from unirtc.plugin import PluginContext, PluginManager, bundled_plugins
from unirtc.settings import Settings
from unirtc.sip.service import make_sip_listeners
from unirtc.tls import CertificateFiles
from unirtc.turn.responder import StunResponder
from unirtc.turn.stream import StunStreamFactory
from unirtc.web.site import make_site
from unirtc.xmpp.service import make_xmpp_listeners

log = get_logger("unirtc.service")


class SequentialMultiService(MultiService):
    """A MultiService that stops its children one at a time, last started first.

    Plain MultiService stops children concurrently; a server with a database behind it must
    stop listening, then let sessions and plugins finish, and only then close the database.
    """

    def stopService(self) -> Deferred[None]:
        async def stop_in_order() -> None:
            for child in reversed(list(self)):
                if child.running:
                    await maybeDeferred(child.stopService)
            log.info("unirtc stopped cleanly")

        self.running = 0
        return ensureDeferred(stop_in_order())


class UnirtcService(SequentialMultiService):
    """The root: a schema that is behind ends startup with one log line, not a traceback."""

    def startService(self) -> None:
        try:
            super().startService()
        except SchemaBehind as e:
            log.critical("Refusing to start: {problem}", problem=str(e))
            raise SystemExit(1) from None


def makeService(settings: Settings, reactor: Any = None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor
    set_level(settings.server.log_level)
    root = UnirtcService()
    root.setName("unirtc")

    directory = Directory(
        settings.server.database,
        reactor,
        upgrade_command=f"unirtc-ctl -c {settings.path} db upgrade",
    )
    directory.setServiceParent(root)

    certificate = CertificateService(
        CertificateFiles(settings.tls.certificate, settings.tls.key),
        settings.served_domains,
        settings.tls.self_signed,
    )
    certificate.setServiceParent(root)

    context = PluginContext(settings=settings, directory=directory, reactor=reactor)
    names = list(settings.xmpp.plugins) if settings.xmpp.plugins is not None else bundled_plugins()
    PluginManager(names, settings.server.plugin_paths, context).setServiceParent(root)

    listeners = MultiService()
    listeners.setName("listeners")
    listeners.setServiceParent(root)
    admin_service(settings.server.state_dir, context.items, reactor).setServiceParent(listeners)
    if settings.web.listen:
        factory = make_site(context.items)
        if settings.web.tls:
            factory = TLSMemoryBIOFactory(certificate, False, factory)
        web = endpoint_service(settings.web.listen, factory, reactor=reactor)
        web.setName("web")
        web.setServiceParent(listeners)
    if settings.turn.stun is not None:
        stun = UDPServer(settings.turn.stun.port, StunResponder(), interface=settings.turn.stun.interface,
                         reactor=reactor)
        stun.setName("stun-udp")
        stun.setServiceParent(listeners)
        stun_tcp = TCPServer(settings.turn.stun.port, StunStreamFactory(reactor),
                             interface=settings.turn.stun.interface, reactor=reactor)
        stun_tcp.setName("stun-tcp")
        stun_tcp.setServiceParent(listeners)
    # XMPP: c2s, direct-TLS c2s, XEP-0114 components and the sessions they open (unirtc/xmpp/service.py)
    for xmpp_listener in make_xmpp_listeners(settings, context, certificate, directory, reactor):
        xmpp_listener.setServiceParent(listeners)
    # SIP: the binding store, UDP/TCP/TLS listeners, registrar and proxy (unirtc/sip/service.py),
    # and SIP over WebSocket on the web listener
    for sip_listener in make_sip_listeners(settings, directory, certificate, reactor, context.items):
        sip_listener.setServiceParent(listeners)
    return root


def service_named(root: MultiService, *path: str) -> IService:
    """Find a child by its names from the root, e.g. ``service_named(root, "listeners", "web")``."""
    node = root
    for name in path:
        node = node.getServiceNamed(name)
    return node

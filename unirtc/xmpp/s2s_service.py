# -*- test-case-name: tests.protocol.test_s2s_links -*-
"""Federation in the service tree: the ``[xmpp] s2s`` listener and the outgoing link manager.

``make_s2s_services`` returns two services for the "listeners" MultiService:

- ``s2s-links`` hooks ``route/remote`` while running and closes every link when stopping;
- ``s2s``, the listener for incoming streams (STARTTLS, ``jabber:server``).

Trust anchors are the system store plus ``[tls] ca``, read when the tree is built, so a bad
file stops startup with one line naming it. DNS goes through ``twisted.names.client``, made
on first use (and replaceable with ``dns_resolver=`` in tests).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from twisted.application.service import Service
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory

from unirtc.logging import get_logger
from unirtc.plugin import HookBus
from unirtc.tls import CertificateFiles
from unirtc.xmpp.peer_identity import PeerCheck, PeerIdentityError, TrustStore, check_peer, load_anchors
from unirtc.xmpp.resolver import S2SResolver, Target
from unirtc.xmpp.router import Router
from unirtc.xmpp.s2s import NS_SERVER, Federation, S2STLS
from unirtc.xmpp.s2s_in import IncomingSession
from unirtc.xmpp.s2s_links import LinkManager
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.s2s")

CONNECT_TIMEOUT = 10.0


class _LazyDNS:
    """``twisted.names.client`` made on the first lookup (it reads resolv.conf and schedules
    re-reads), so building the service tree stays free of I/O."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._resolver: Any = None

    def lookupService(self, name: str) -> Deferred[Any]:
        if self._resolver is None:
            from twisted.names import client

            self._resolver = client.createResolver(reactor=self.reactor)
        return self._resolver.lookupService(name)


class _IncomingFactory(Factory):
    def __init__(self, federation: Federation, streams: set[XmppStream], max_stanza: int) -> None:
        self.federation = federation
        self.streams = streams
        self.max_stanza = max_stanza

    def buildProtocol(self, addr: Any) -> XmppStream:
        stream = XmppStream(lambda s: IncomingSession(self.federation, s), self.federation.clock,
                            namespace=NS_SERVER, max_stanza=self.max_stanza, registry=self.streams)
        stream.factory = self
        return stream


class S2SLinksService(Service):
    """Owns the link manager: hooks ``route/remote`` while running."""

    name = "s2s-links"

    def __init__(self, manager: LinkManager, bus: HookBus, anchors: int) -> None:
        self.manager = manager
        self.bus = bus
        self.anchors = anchors
        self._hook: Any = None

    def startService(self) -> None:
        super().startService()
        self._hook = self.bus.add("route/remote", self.manager.route_remote)
        federation = self.manager.federation
        log.info("s2s: federation on; TLS {tls}, dialback {dialback}, trust anchors: system store + {n} "
                 "from [tls] ca, static routes: {routes}",
                 tls="required" if federation.require_encryption else "optional",
                 dialback="accepted" if federation.dialback else "refused", n=self.anchors,
                 routes=", ".join(f"{d}={h}:{p}" for d, (h, p) in self.manager.resolver.static.items()) or "none")

    def stopService(self) -> None:
        super().stopService()
        if self._hook is not None:
            self.bus.remove("route/remote", self._hook)
            self._hook = None
        self.manager.close_all()


def connector(reactor: Any, tls: S2STLS, timeout: float = CONNECT_TIMEOUT) -> Any:
    """Connect to a target with a TCP (or, for ``_xmpps-server`` targets, TLS) endpoint."""

    def connect(target: Target, remote: str, factory: Factory) -> Deferred[Any]:
        endpoint: Any = HostnameEndpoint(reactor, target.host, target.port, timeout=timeout)
        if target.direct_tls:
            endpoint = wrapClientTLS(tls.client(remote, direct_tls=True), endpoint)
        return endpoint.connect(factory)

    return connect


def make_federation(router: Router, bus: HookBus, clock: Any, tls: S2STLS | None, settings: Any,
                    anchors: list[x509.Certificate]) -> Federation:
    """The shared session settings; certificates are judged at the clock's time."""
    store = TrustStore(anchors, system=True)

    def judge(chain: list[x509.Certificate], domain: str) -> PeerCheck:
        return check_peer(store, chain, domain, datetime.fromtimestamp(clock.seconds(), timezone.utc))

    return Federation(router, bus, clock, os.urandom(32), judge, tls,
                      require_encryption=settings.s2s.require_encryption, dialback=settings.s2s.dialback)


def make_s2s_services(settings: Any, context: Any, certificate: Any, router: Router,
                      streams: set[XmppStream], reactor: Any, dns_resolver: Any = None) -> list[Service]:
    """The ``s2s-links`` service and the ``s2s`` listener (see the module docstring)."""
    try:
        anchors = load_anchors(settings.tls.ca) if settings.tls.ca is not None else []
    except PeerIdentityError as e:
        log.critical("Refusing to start: {problem}", problem=str(e))
        raise SystemExit(1) from None
    files = getattr(certificate, "files", None) or CertificateFiles(settings.tls.certificate, settings.tls.key)
    tls = S2STLS(files)
    federation = make_federation(router, context.bus, reactor, tls, settings, anchors)
    resolver = S2SResolver(settings.s2s.hosts, dns_resolver or _LazyDNS(reactor))
    manager = LinkManager(federation, resolver, connector(reactor, tls), streams=streams,
                          max_stanza=settings.xmpp.max_stanza_size)
    context.items.add("s2s-links", manager)
    links = S2SLinksService(manager, context.bus, len(anchors))
    listener = endpoint_service(settings.xmpp.s2s, _IncomingFactory(federation, streams,
                                                                     settings.xmpp.max_stanza_size),
                                reactor=reactor)
    listener.setName("s2s")
    return [links, listener]

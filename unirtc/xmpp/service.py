# -*- test-case-name: tests.protocol.test_xmpp_service -*-
"""The XMPP listeners from ``[xmpp]`` and ``[components]``, and the sessions they open.

``make_xmpp_listeners`` builds one router shared by all listeners, announces it to plugins as
the ``xmpp-router`` item, and returns the services for the "listeners" MultiService:

- ``xmpp-sessions`` closes every open stream with ``system-shutdown`` when the server stops;
- ``c2s`` (STARTTLS, required before authentication) and ``c2s-tls`` (XEP-0368 direct TLS);
- ``components`` (XEP-0114), when ``[components]`` names at least one component;

and mounts XMPP over WebSocket (RFC 7395, ``[xmpp] websocket``) on the web listener.

An empty endpoint in the configuration means no such listener.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.application.service import Service
from twisted.application.strports import service as endpoint_service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from unirtc.throttle import FailureThrottle
from unirtc.web.websocket import OriginPolicy, WebSocketEndpoint
from unirtc.xmpp.c2s import C2SSettings, ClientSession
from unirtc.xmpp.c2s_sasl import AuthSettings
from unirtc.xmpp.component import NS_COMPONENT, ComponentSession, ComponentSettings
from unirtc.xmpp.router import Router
from unirtc.xmpp.s2s_service import make_s2s_services
from unirtc.xmpp.stream import XmppStream
from unirtc.xmpp.websocket import SUBPROTOCOL, XmppWebSocketFactory

SHUTDOWN_GRACE = 3.0


@implementer(IProtocolNegotiationFactory)
class StreamFactory(Factory):
    """Builds an ``XmppStream`` per connection with a session from ``make_session(stream)``.

    ``alpn`` names the ALPN protocols a direct-TLS listener accepts (XEP-0368: "xmpp-client").
    """

    def __init__(self, make_session: Callable[[XmppStream], Any], clock: Any, streams: set[XmppStream],
                 namespace: str = "jabber:client", max_stanza: int = 262144,
                 alpn: tuple[bytes, ...] = ()) -> None:
        self.make_session = make_session
        self.clock = clock
        self.streams = streams
        self.namespace = namespace
        self.max_stanza = max_stanza
        self.alpn = alpn

    def acceptableProtocols(self) -> list[bytes]:
        return list(self.alpn)

    def buildProtocol(self, addr: Any) -> XmppStream:
        stream = XmppStream(self.make_session, self.clock, namespace=self.namespace,
                            max_stanza=self.max_stanza, registry=self.streams)
        stream.factory = self
        return stream


class SessionsService(Service):
    """Owns the set of open streams; on stop, ends each with ``system-shutdown`` (RFC 6120 §4.9.3.19)
    and waits up to ``SHUTDOWN_GRACE`` seconds for the connections to close."""

    name = "xmpp-sessions"

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.streams: set[XmppStream] = set()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for stream in list(self.streams):
            stream.fail("system-shutdown", "the server is stopping")
        if not self.streams:
            return succeed(None)
        done: Deferred[None] = Deferred()
        deadline = self.clock.seconds() + SHUTDOWN_GRACE

        def check() -> None:
            if not self.streams or self.clock.seconds() >= deadline:
                for stream in list(self.streams):
                    stream.transport.abortConnection()
                done.callback(None)
            else:
                self.clock.callLater(0.05, check)

        check()
        return done


def make_router(settings: Any, context: Any, directory: Any) -> Router:
    """The router for the account domain; an account 'exists' for routing if it is enabled."""

    def account_exists(localpart: str, domain: str) -> Deferred[bool]:
        return directory.credentials(localpart, domain).addCallback(
            lambda credentials: credentials is not None and not credentials.disabled)

    return Router({settings.server.domain}, context.bus, account_exists)


def make_xmpp_listeners(settings: Any, context: Any, certificate: Any, directory: Any,
                        reactor: Any) -> list[Service]:
    """Build the XMPP services (see the module docstring) for the "listeners" MultiService."""
    router = make_router(settings, context, directory)
    context.items.add("xmpp-router", router)
    sessions = SessionsService(reactor)
    services: list[Service] = [sessions]
    auth = AuthSettings(
        domain=settings.server.domain,
        credentials=directory.credentials,
        throttle=FailureThrottle(),
        clock=reactor,
        fake_salt_key=os.urandom(32),
    )
    c2s = C2SSettings(
        auth=auth, router=router, bus=context.bus, clock=reactor, tls=certificate,
        stream_features=lambda: context.items.get("stream-feature"),
    )
    max_stanza = settings.xmpp.max_stanza_size

    def listener(name: str, description: str, factory: Factory) -> None:
        service = endpoint_service(description, factory, reactor=reactor)
        service.setName(name)
        services.append(service)

    if settings.xmpp.c2s:
        factory = StreamFactory(lambda s: ClientSession(c2s, s), reactor, sessions.streams,
                                max_stanza=max_stanza)
        listener("c2s", settings.xmpp.c2s, factory)
    if settings.xmpp.c2s_direct_tls:
        direct = replace(c2s, tls=None)
        factory = StreamFactory(lambda s: ClientSession(direct, s), reactor, sessions.streams,
                                max_stanza=max_stanza, alpn=(b"xmpp-client",))
        listener("c2s-tls", settings.xmpp.c2s_direct_tls, TLSMemoryBIOFactory(certificate, False, factory))
    if settings.xmpp.websocket and settings.web.listen:
        # The same sessions over RFC 7395; no STARTTLS there (WSS is TLS already).
        websocket = replace(c2s, tls=None)
        ws_factory = XmppWebSocketFactory(lambda s: ClientSession(websocket, s), reactor, sessions.streams,
                                          max_stanza=max_stanza)
        endpoint = WebSocketEndpoint({SUBPROTOCOL: ws_factory}, OriginPolicy(settings.web.origins),
                                     max_message=max_stanza)
        context.items.add("http-path", (settings.xmpp.websocket, endpoint))
    if settings.components.listen and settings.components.secrets:
        components = ComponentSettings(dict(settings.components.secrets), router, reactor)
        factory = StreamFactory(lambda s: ComponentSession(components, s), reactor, sessions.streams,
                                namespace=NS_COMPONENT, max_stanza=max_stanza)
        listener("components", settings.components.listen, factory)
    if settings.xmpp.s2s:
        # Federation: the s2s listener and the outgoing links behind route/remote (s2s_service.py)
        services += make_s2s_services(settings, context, certificate, router, sessions.streams, reactor)
    return services

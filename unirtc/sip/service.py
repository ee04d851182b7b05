# -*- test-case-name: tests.protocol.test_sip_proxy -*-
"""The SIP core and listeners: transactions run on the reactor, REGISTER to the registrar,
everything else to the proxy.

:class:`SipCore` is the thin driver of ``transaction.py``: it matches each message to its
transaction (§17.1.3, §17.2.3), runs the actions the state machines return (sends, timers on
an injected clock, deliveries) and hands new requests to the transaction users.
``make_sip_listeners`` builds it with the registrar, proxy and binding store from S1's modules
and returns the services for the "listeners" MultiService: the binding store (it loads and
purges bindings), and one UDP, TCP or TLS listener per ``[sip] listen`` entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import UDPServer
from twisted.application.service import Service
from twisted.application.strports import service as endpoint_service
from twisted.protocols.tls import TLSMemoryBIOFactory

from unirtc.logging import get_logger
from unirtc.sip.message import SipRequest, SipResponse, make_response
from unirtc.sip.transaction import (
    Action,
    CancelTimer,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    StartTimer,
    Terminated,
    client_key,
    server_key,
)
from unirtc.sip.transport import Hop, SipDatagramProtocol, SipStreamFactory, Transports, via_hop

log = get_logger("unirtc.sip")

Transaction = ServerTransaction | ClientTransaction


class SipCore:
    """Transaction matching and action running; ``registrar`` and ``proxy`` are set after."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.transports: Transports = None  # type: ignore[assignment]
        self.registrar: Any = None
        self.proxy: Any = None
        self.servers: dict[tuple[str, ...], ServerTransaction] = {}
        self.clients: dict[tuple[str, str], ClientTransaction] = {}
        self._sources: dict[int, Hop] = {}
        self._callbacks: dict[int, Callable[[SipResponse], None]] = {}
        self._timers: dict[tuple[int, str], Any] = {}

    # inbound --------------------------------------------------------------------------------

    def receive(self, message: SipRequest | SipResponse, source: Hop) -> None:
        """Every well-formed message from the transports (requests already Via-stamped)."""
        if isinstance(message, SipResponse):
            client = self.clients.get(client_key(message))
            if client is not None:
                self._run(client, client.receive(message, self.clock.seconds()))
            elif self.proxy is not None:
                self.proxy.stray_response(message)
            return
        server = self.servers.get(server_key(message))
        if server is not None:
            actions = server.receive(message, self.clock.seconds())
            self._run(server, actions)
            return
        if message.method == "ACK":
            if self.proxy is not None:
                self.proxy.ack(message, source)
            return
        server = ServerTransaction(message, via_hop(message.via[0], source.flow), source.reliable)
        self.servers[server.key] = server
        self._sources[id(server)] = source
        self._run(server, server.receive(message, self.clock.seconds()))

    def _dispatch(self, server: ServerTransaction, request: SipRequest) -> None:
        source = self._sources.get(id(server))
        if source is None:
            return
        if request.method == "ACK":  # an ACK matched a transaction in Accepted (RFC 6026)
            self.proxy.ack(request, source)
        elif request.method == "REGISTER":
            if self.registrar is None:
                self.respond(server, make_response(request, 501, to_tag="unirtc"))
                return
            d = self.registrar.handle(request, source.address, source.flow)
            d.addCallback(lambda response: self.respond(server, response))
            d.addErrback(self._failed, server, request)
        elif request.method == "CANCEL":
            self.proxy.cancel(request, server, self.servers.get(server_key(request, "INVITE")))
        else:
            self.proxy.handle(request, server, source)

    def _failed(self, failure: Any, server: ServerTransaction, request: SipRequest) -> None:
        log.failure("SIP: {method} failed", failure, method=request.method)
        self.respond(server, make_response(request, 500, to_tag="unirtc"))

    # outbound ---------------------------------------------------------------------------

    def respond(self, server: ServerTransaction, response: SipResponse) -> None:
        self._run(server, server.send_response(response, self.clock.seconds()))

    def request(self, request: SipRequest, hop: Hop,
                on_response: Callable[[SipResponse], None]) -> ClientTransaction:
        """Send ``request`` (top Via already ours) in a new client transaction to ``hop``."""
        client = ClientTransaction(request, hop, hop.reliable)
        self.clients[client.key] = client
        self._callbacks[id(client)] = on_response
        self._run(client, client.start(self.clock.seconds()))
        return client

    # running actions ----------------------------------------------------------------------

    def _run(self, tx: Transaction, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.transports.send(action.data, action.destination,
                                     on_error=lambda tx=tx: self._later(self._transport_error, tx))
            elif isinstance(action, StartTimer):
                self._cancel_timer(tx, action.name)
                self._timers[(id(tx), action.name)] = self.clock.callLater(
                    action.delay, self._fire, tx, action.name)
            elif isinstance(action, CancelTimer):
                self._cancel_timer(tx, action.name)
            elif isinstance(action, Deliver):
                self._deliver(tx, action.message)
            elif isinstance(action, Terminated):
                self._terminated(tx)

    def _deliver(self, tx: Transaction, message: SipRequest | SipResponse) -> None:
        try:
            if isinstance(tx, ServerTransaction):
                assert isinstance(message, SipRequest)
                self._dispatch(tx, message)
            else:
                assert isinstance(message, SipResponse)
                callback = self._callbacks.get(id(tx))
                if callback is not None:
                    callback(message)
        except Exception:
            log.failure("SIP: the transaction user failed on a {kind}",
                        kind=type(message).__name__)

    def _terminated(self, tx: Transaction) -> None:
        for key in [k for k in self._timers if k[0] == id(tx)]:
            self._cancel_timer(tx, key[1])
        if isinstance(tx, ServerTransaction):
            if self.servers.get(tx.key) is tx:
                del self.servers[tx.key]
            self._sources.pop(id(tx), None)
            if self.proxy is not None:
                self.proxy.forget(tx)
        else:
            if self.clients.get(tx.key) is tx:
                del self.clients[tx.key]
            self._callbacks.pop(id(tx), None)

    def _fire(self, tx: Transaction, name: str) -> None:
        self._timers.pop((id(tx), name), None)
        self._run(tx, tx.on_timer(name, self.clock.seconds()))

    def _transport_error(self, tx: Transaction) -> None:
        self._run(tx, tx.transport_error(self.clock.seconds()))

    def _later(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function`` on the next reactor turn, outside the action loop that failed."""
        self.clock.callLater(0, function, *args)

    def _cancel_timer(self, tx: Transaction, name: str) -> None:
        call = self._timers.pop((id(tx), name), None)
        if call is not None and call.active():
            call.cancel()


def build_core(settings: Any, directory: Any, reactor: Any, secret: bytes,
               bindings: Any) -> SipCore:
    """The core with its transports, registrar, authenticator and proxy, without listeners."""
    from unirtc.sip.digest import DigestAuthenticator, domain_map
    from unirtc.sip.locate import make_locator
    from unirtc.sip.proxy import Proxy
    from unirtc.sip.registrar import Registrar

    realm_for = domain_map(settings)
    core = SipCore(reactor)
    core.transports = Transports(core, reactor, advertise=settings.server.domain,
                                 connect_tcp=getattr(reactor, "connectTCP", None))
    authenticator = DigestAuthenticator(directory, secret, reactor, realm_for)
    core.registrar = Registrar(authenticator, bindings, reactor, realm_for)
    core.proxy = Proxy(core, reactor, realm_for, settings.server.domain, directory, bindings, authenticator,
                       locator=make_locator(settings, reactor))
    return core


def make_sip_listeners(settings: Any, directory: Any, certificate: Any, reactor: Any,
                       items: Any = None) -> list[Service]:
    """The binding store and one listener per ``[sip] listen`` entry (see the module docstring);
    with the plugin ``items``, SIP over WebSocket joins the web listener (``sip/websocket.py``)."""
    from unirtc.serverkey import load_or_create
    from unirtc.sip import websocket
    from unirtc.sip.bindings import BindingStore

    if not settings.sip.listen:
        return []
    bindings = BindingStore(directory, reactor)
    core = build_core(settings, directory, reactor, load_or_create(settings.server.state_dir), bindings)
    services: list[Service] = [bindings]
    for listener in settings.sip.listen:
        transport = listener.transport.upper()
        name = f"sip-{listener.transport}-{listener.port}" + (
            f"-{listener.interface}" if listener.interface else "")
        core.transports.listeners.append((transport, listener.interface, listener.port))
        if transport == "UDP":
            protocol = SipDatagramProtocol(core.transports, ipv6=":" in listener.interface)
            service: Service = UDPServer(listener.port, protocol, interface=listener.interface,
                                         reactor=reactor)
        else:
            factory: Any = SipStreamFactory(core.transports, transport)
            if transport == "TLS":
                factory = TLSMemoryBIOFactory(certificate, False, factory)
            interface = listener.interface.replace(":", "\\:")
            kind = "tcp6" if ":" in listener.interface else "tcp"
            description = f"{kind}:{listener.port}" + (f":interface={interface}" if interface else "")
            service = endpoint_service(description, factory, reactor=reactor)
        service.setName(name)
        services.append(service)
    websocket.mount(settings, core, bindings, items)
    return services

# -*- test-case-name: tests.unit.test_sip_locate -*-
"""Locating the SIP servers of a foreign domain (RFC 3263 §4): NAPTR, then SRV, then A/AAAA.

The proxy relays an authenticated local user's request to a foreign domain only when
``[sip] outbound`` is on; this module turns the request's target URI into the hops to try,
in order.  The choices are pure functions over DNS answers (:func:`naptr_choices`,
:func:`static_hop`); :class:`SipLocator` runs the queries through any object with
twisted.names' ``IResolver`` lookups (``twisted.names.client`` in the server, a fake in
tests).  Outbound TLS is not spoken by the transports yet, so ``SIPS+D2T`` and ``sips:``
targets yield nothing unless a caller enables TLS in ``transports``.  ``make_locator(settings,
reactor)`` is what the service passes to ``Proxy(..., locator=...)``.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.names import dns
from twisted.names.error import DNSNameError

from unirtc.logging import get_logger
from unirtc.sip.transport import DEFAULT_PORTS, Hop
from unirtc.sip.uri import SipURI
from unirtc.xmpp.resolver import SrvRecord, order_srv

log = get_logger("unirtc.sip.locate")

# RFC 3263 §4.1: NAPTR service field -> transport, and the SRV prefix of each transport.
NAPTR_SERVICES = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
SRV_PREFIXES = {"TLS": "_sips._tcp", "TCP": "_sip._tcp", "UDP": "_sip._udp"}
PREFERENCE = ("TLS", "TCP", "UDP")  # our order when the domain has no NAPTR records
MAX_HOPS = 8


class LocateError(Exception):
    """The target cannot be looked up at all (not a DNS name); the text says why."""


@dataclass(frozen=True)
class Naptr:
    """One NAPTR answer, with the fields RFC 3263 uses."""

    order: int
    preference: int
    flags: str
    service: str
    replacement: str


def _plain(host: str) -> str:
    return host.strip("[]")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(_plain(host))
    except ValueError:
        return False
    return True


def _requested_transport(uri: SipURI) -> str | None:
    """The transport a transport parameter insists on (§4.1; over sips: it can only be TLS)."""
    transport = (uri.transport or "").upper()
    if transport not in ("UDP", "TCP", "TLS"):
        return None
    return "TLS" if uri.scheme == "sips" else transport


def static_hop(uri: SipURI, transports: Iterable[str]) -> Hop | None:
    """§4.1/§4.2 without DNS: a numeric host gives its hop at once (None otherwise, or when
    the transport is one we cannot use)."""
    host = _plain(uri.maddr or uri.host)
    if not _is_ip(host):
        return None
    transport = _requested_transport(uri) or ("TLS" if uri.scheme == "sips" else "UDP")
    if transport not in transports:
        return None
    return Hop(transport, host, uri.port or DEFAULT_PORTS[transport])


def naptr_choices(records: Sequence[Naptr], secure: bool, transports: Iterable[str]) -> list[tuple[str, str]]:
    """§4.1: (transport, SRV name) from the NAPTR answers, best first.

    Only terminal ``s`` records for SIP services we can use count; a ``sips:`` target keeps
    only ``SIPS+D2T``.  Records are ordered by order, then preference.
    """
    usable = set(transports)
    choices = []
    for record in sorted(records, key=lambda r: (r.order, r.preference)):
        transport = NAPTR_SERVICES.get(record.service.upper())
        if transport is None or record.flags.lower() != "s" or not record.replacement:
            continue
        if transport not in usable or (secure and transport != "TLS"):
            continue
        choices.append((transport, record.replacement.rstrip(".")))
    return list(dict.fromkeys(choices))


def _system_choose(total: int) -> int:
    return random.SystemRandom().randint(0, total)


class SipLocator:
    """RFC 3263 §4 over an ``IResolver``; ``transports`` are those we can send on.

    :param resolver: anything with ``lookupNamingAuthorityPointer``, ``lookupService``,
        ``lookupAddress`` and ``lookupIPV6Address`` returning twisted.names answers
    :param choose: ``choose(total)`` -> an integer in [0, total], for RFC 2782 weights
    """

    def __init__(self, resolver: Any, transports: Sequence[str] = ("UDP", "TCP"),
                 choose: Callable[[int], int] = _system_choose) -> None:
        self.resolver = resolver
        self.transports = tuple(transports)
        self.choose = choose

    def __call__(self, uri: SipURI) -> Deferred[list[Hop]]:
        return self.locate(uri)

    def locate(self, uri: SipURI) -> Deferred[list[Hop]]:
        """The hops for ``uri`` in the order to try them (empty when the domain has none);
        fails with :class:`LocateError` only for a host that is no DNS name."""
        return ensureDeferred(self._locate(uri))

    async def _locate(self, uri: SipURI) -> list[Hop]:
        hop = static_hop(uri, self.transports)
        if hop is not None or _is_ip(uri.maddr or uri.host):
            return [hop] if hop is not None else []
        host = _idna(_plain(uri.maddr or uri.host))
        secure = uri.scheme == "sips"
        transport = _requested_transport(uri)
        if transport is not None and transport not in self.transports:
            return []
        if uri.port is not None:  # §4.2: an explicit port means no SRV, just addresses
            transport = transport or ("TLS" if secure else "UDP")
            return await self._addresses_for(transport, host, uri.port)
        if transport is None:
            choices = naptr_choices(await self._naptr(host), secure, self.transports)
            if not choices:  # §4.1: no (usable) NAPTR: SRV queries for what we support
                choices = [(t, f"{SRV_PREFIXES[t]}.{host}") for t in PREFERENCE
                           if t in self.transports and (t == "TLS" or not secure)]
            found: list[Hop] | None = None
            for choice, name in choices:
                hops = await self._srv_hops(choice, name)
                if hops is not None:
                    found = (found or []) + hops
            if found is not None:  # §4.2: SRV records, even only ".", rule out the A fallback
                return found[:MAX_HOPS]
            transport = "TLS" if secure else "UDP"
        else:
            hops = await self._srv_hops(transport, f"{SRV_PREFIXES[transport]}.{host}")
            if hops is not None:
                return hops[:MAX_HOPS]
        return await self._addresses_for(transport, host, DEFAULT_PORTS[transport])

    async def _addresses_for(self, transport: str, host: str, port: int) -> list[Hop]:
        if transport not in self.transports:
            return []
        return [Hop(transport, address, port) for address in await self._addresses(host)][:MAX_HOPS]

    async def _srv_hops(self, transport: str, name: str) -> list[Hop] | None:
        """The SRV targets' addresses in RFC 2782 order; None when there is no SRV record."""
        records = await self._srv(name)
        if not records:
            return None
        if len(records) == 1 and records[0].is_dot:
            return []  # RFC 2782: the service is decidedly not available here
        hops: list[Hop] = []
        for record in order_srv([r for r in records if not r.is_dot], self.choose):
            for address in await self._addresses(record.target.rstrip(".")):
                hops.append(Hop(transport, address, record.port))
        return hops

    # queries: every failure (NXDOMAIN, timeout, SERVFAIL) reads as "no records" -------------

    async def _answers(self, method: str, name: str, kind: int) -> list[Any]:
        try:
            answers, _, _ = await getattr(self.resolver, method)(name)
        except DNSNameError:
            return []
        except Exception as e:  # a DNS timeout or server failure: try the next step
            log.info("SIP outbound: {kind} lookup of {name} failed: {error}",
                     kind=dns.QUERY_TYPES.get(kind, kind), name=name, error=e)
            return []
        return [rr.payload for rr in answers if rr.type == kind]

    async def _naptr(self, name: str) -> list[Naptr]:
        payloads = await self._answers("lookupNamingAuthorityPointer", name, dns.NAPTR)
        return [Naptr(p.order, p.preference, _text(p.flags), _text(p.service),
                      p.replacement.name.decode("ascii", "replace")) for p in payloads]

    async def _srv(self, name: str) -> list[SrvRecord]:
        payloads = await self._answers("lookupService", name, dns.SRV)
        return [SrvRecord(p.priority, p.weight, p.port, p.target.name.decode("ascii", "replace"))
                for p in payloads]

    async def _addresses(self, host: str) -> list[str]:
        if _is_ip(host):
            return [_plain(host)]
        v4 = [p.dottedQuad() for p in await self._answers("lookupAddress", host, dns.A)]
        v6 = [socket.inet_ntop(socket.AF_INET6, p.address)
              for p in await self._answers("lookupIPV6Address", host, dns.AAAA)]
        return list(dict.fromkeys(v4 + v6))


class SystemResolver:
    """``twisted.names.client`` made on the first lookup.

    Creating it reads resolv.conf and starts a timer, which should not happen while twistd
    builds the service tree (before daemonising), nor at all when nobody calls outward.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._resolver: Any = None

    def _get(self) -> Any:
        if self._resolver is None:
            from twisted.names import client

            self._resolver = client.createResolver(reactor=self.reactor)
        return self._resolver

    def lookupNamingAuthorityPointer(self, name: str) -> Deferred[Any]:
        return self._get().lookupNamingAuthorityPointer(name)

    def lookupService(self, name: str) -> Deferred[Any]:
        return self._get().lookupService(name)

    def lookupAddress(self, name: str) -> Deferred[Any]:
        return self._get().lookupAddress(name)

    def lookupIPV6Address(self, name: str) -> Deferred[Any]:
        return self._get().lookupIPV6Address(name)


def make_locator(settings: Any, reactor: Any, resolver: Any = None) -> SipLocator | None:
    """The proxy's locator when ``[sip] outbound`` is on (None keeps foreign domains 403)."""
    if not getattr(settings.sip, "outbound", False):
        return None
    return SipLocator(resolver if resolver is not None else SystemResolver(reactor))


def _text(value: Any) -> str:
    raw = getattr(value, "string", value)
    return raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise LocateError(f"{host!r} is not a DNS name: {e}") from None

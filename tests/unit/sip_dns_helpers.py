"""A canned twisted.names resolver for RFC 3263 tests: answers from a table, never the network."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns
from twisted.names.error import DNSNameError, DNSServerError


def naptr(order: int, preference: int, service: str, replacement: str, flags: str = "s") -> Any:
    return dns.Record_NAPTR(order, preference, flags.encode(), service.encode(), b"", replacement.encode())


def srv(priority: int, weight: int, port: int, target: str) -> Any:
    return dns.Record_SRV(priority, weight, port, target.encode())


def a(address: str) -> Any:
    return dns.Record_A(address)


def aaaa(address: str) -> Any:
    return dns.Record_AAAA(address)


_KINDS = {dns.Record_NAPTR: dns.NAPTR, dns.Record_SRV: dns.SRV, dns.Record_A: dns.A, dns.Record_AAAA: dns.AAAA}


class FakeResolver:
    """``records`` maps a name to its records (of any types); names in ``broken`` fail with
    SERVFAIL; other names are NXDOMAIN.  ``queries`` lists (type, name) in the order asked."""

    def __init__(self, records: dict[str, list[Any]] | None = None, broken: tuple[str, ...] = ()) -> None:
        self.records = records or {}
        self.broken = set(broken)
        self.queries: list[tuple[str, str]] = []

    def _lookup(self, name: str, kind: int) -> Deferred[tuple[list[Any], list[Any], list[Any]]]:
        self.queries.append((dns.QUERY_TYPES[kind], name))
        if name in self.broken:
            return fail(DNSServerError(name))
        if name not in self.records:
            return fail(DNSNameError(name))
        answers = [dns.RRHeader(name.encode(), _KINDS[type(p)], payload=p)
                   for p in self.records[name] if _KINDS[type(p)] == kind]
        return succeed((answers, [], []))

    def lookupNamingAuthorityPointer(self, name: str) -> Deferred[Any]:
        return self._lookup(name, dns.NAPTR)

    def lookupService(self, name: str) -> Deferred[Any]:
        return self._lookup(name, dns.SRV)

    def lookupAddress(self, name: str) -> Deferred[Any]:
        return self._lookup(name, dns.A)

    def lookupIPV6Address(self, name: str) -> Deferred[Any]:
        return self._lookup(name, dns.AAAA)

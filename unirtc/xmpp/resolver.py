# -*- test-case-name: tests.unit.test_s2s_resolver -*-
"""Where to connect for a remote XMPP domain (RFC 6120 §3.2, XEP-0368, RFC 2782).

In order: a static route from ``[s2s] hosts``; else the ``_xmpps-server._tcp`` (direct TLS)
and ``_xmpp-server._tcp`` (STARTTLS) SRV records of the domain, mixed and ordered by
priority and weight as XEP-0368 asks; else, when the domain publishes no SRV records at all,
the domain itself on port 5269. The host names of SRV targets and of the fallback are
resolved to A/AAAA addresses when connecting (``HostnameEndpoint``, which tries IPv6 and
IPv4 side by side), not here.

``plan_targets`` and ``order_srv`` are pure; ``S2SResolver`` runs the two SRV queries through
any object with twisted.names' ``lookupService`` (``twisted.names.client`` in the server, a
fake in tests) and hands the answers to them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure

from unirtc.logging import get_logger

log = get_logger("unirtc.xmpp.s2s")

XMPP_SERVER_PORT = 5269
SERVICES = (("_xmpps-server._tcp", True), ("_xmpp-server._tcp", False))


@dataclass(frozen=True)
class SrvRecord:
    """One SRV answer; ``direct_tls`` is True for ``_xmpps-server`` records."""

    priority: int
    weight: int
    port: int
    target: str
    direct_tls: bool = False

    @property
    def is_dot(self) -> bool:
        """RFC 2782: a lone target of "." says the service is decidedly not available."""
        return self.target in ("", ".")


@dataclass(frozen=True)
class Target:
    """A host and port to try, how to speak TLS there, and where it came from (for logs)."""

    host: str
    port: int
    direct_tls: bool = False
    source: str = "A/AAAA fallback"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        kind = "direct TLS" if self.direct_tls else "STARTTLS"
        return f"{host}:{self.port} ({self.source}, {kind})"


class ResolutionError(Exception):
    """The domain has no usable server; the text says why, for logs and bounce texts."""


def order_srv(records: Sequence[SrvRecord], choose: Callable[[int], int]) -> list[SrvRecord]:
    """RFC 2782's order: by priority, and within one priority by weighted random selection.

    ``choose(total)`` returns an integer in [0, total]; records of weight 0 are put first in
    their priority, so they are picked only when the draw is 0, as the RFC specifies.
    """
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            draw = choose(sum(r.weight for r in group))
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= draw:
                    ordered.append(group.pop(index))
                    break
            else:  # a draw past the total (a bad chooser): take the last one
                ordered.append(group.pop())
    return ordered


def plan_targets(
    domain: str,
    xmpps: Sequence[SrvRecord] | None,
    xmpp: Sequence[SrvRecord] | None,
    choose: Callable[[int], int],
) -> list[Target]:
    """Turn the two SRV answers (None: no records or the lookup failed) into targets.

    RFC 6120 §3.2.1: a lone "." record means no XMPP service at all. XEP-0368 §4: a lone "."
    for ``_xmpps-server`` only rules out direct TLS, but then the domain has said it uses SRV,
    so there is no A/AAAA fallback either. Without any records: the domain itself on 5269.
    """
    usable: list[SrvRecord] = []
    said_srv = False
    for answer in (xmpps, xmpp):
        if answer is None:
            continue
        records = [r for r in answer if not r.is_dot]
        said_srv = said_srv or bool(answer)
        usable.extend(records)
    xmpp_dot = xmpp is not None and len(xmpp) == 1 and xmpp[0].is_dot
    if xmpp_dot and not usable:
        raise ResolutionError(f"{domain} says it has no XMPP server (SRV target '.')")
    if usable:
        return [Target(r.target.rstrip("."), r.port, r.direct_tls,
                       "SRV _xmpps-server" if r.direct_tls else "SRV _xmpp-server")
                for r in order_srv(usable, choose)]
    if said_srv:
        raise ResolutionError(f"{domain} publishes no usable XMPP server SRV record")
    return [Target(domain, XMPP_SERVER_PORT)]


def _system_choose(total: int) -> int:
    return random.SystemRandom().randint(0, total)


class S2SResolver:
    """Static routes first, then DNS; ``dns`` is an ``IResolver`` (anything with ``lookupService``)."""

    def __init__(
        self,
        static: Mapping[str, tuple[str, int]],
        dns_resolver: Any,
        choose: Callable[[int], int] = _system_choose,
    ) -> None:
        self.static = dict(static)
        self.dns = dns_resolver
        self.choose = choose

    def resolve(self, domain: str) -> Deferred[list[Target]]:
        """The targets for ``domain`` in the order to try them; fails with ResolutionError."""
        route = self.static.get(domain)
        if route is not None:
            host, port = route
            return succeed([Target(host, port, False, "static route [s2s] hosts")])
        try:
            name = domain.encode("idna").decode("ascii")
        except UnicodeError as e:
            return fail(ResolutionError(f"{domain} is not a DNS name: {e}"))
        lookups = [self._lookup(f"{service}.{name}", direct) for service, direct in SERVICES]
        both = DeferredList(lookups, consumeErrors=True)
        return both.addCallback(self._plan, domain)

    def _plan(self, results: list[tuple[bool, Any]], domain: str) -> list[Target]:
        xmpps, xmpp = (answer if ok else None for ok, answer in results)
        targets = plan_targets(domain, xmpps, xmpp, self.choose)
        log.debug("s2s targets for {domain}: {targets}", domain=domain,
                  targets=", ".join(str(t) for t in targets))
        return targets

    def _lookup(self, name: str, direct_tls: bool) -> Deferred[list[SrvRecord] | None]:
        def answered(result: tuple[list[Any], list[Any], list[Any]]) -> list[SrvRecord] | None:
            answers = result[0]
            records = [SrvRecord(rr.payload.priority, rr.payload.weight, rr.payload.port,
                                 rr.payload.target.name.decode("ascii", "replace"), direct_tls)
                       for rr in answers if rr.type == dns.SRV]
            return records or None

        def failed(failure: Failure) -> None:
            if not failure.check(DNSNameError):  # NXDOMAIN is the common, quiet case
                log.info("SRV lookup of {name} failed: {error}", name=name, error=failure.getErrorMessage())
            return None

        return self.dns.lookupService(name).addCallbacks(answered, failed)


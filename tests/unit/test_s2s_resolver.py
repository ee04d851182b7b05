"""Where s2s connects: static routes, SRV (XEP-0368 mixing, RFC 2782 order), A/AAAA fallback."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns
from twisted.names.error import DNSNameError, DNSServerError
from twisted.trial.unittest import SynchronousTestCase

from unirtc.xmpp.resolver import (
    ResolutionError,
    S2SResolver,
    SrvRecord,
    Target,
    order_srv,
    plan_targets,
)


def srv(name: str, priority: int, weight: int, port: int, target: str) -> dns.RRHeader:
    return dns.RRHeader(name, dns.SRV, payload=dns.Record_SRV(priority, weight, port, target))


class FakeDNS:
    """A twisted.names resolver double: canned answers or failures per SRV name, and a query log."""

    def __init__(self, answers: dict[str, list[dns.RRHeader] | Exception]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def lookupService(self, name: str) -> Deferred[Any]:
        self.queries.append(name)
        answer = self.answers.get(name, DNSNameError(name))
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed((answer, [], []))


def first(total: int) -> int:
    """A chooser that always draws 0 (the first eligible record)."""
    return 0


def last(total: int) -> int:
    """A chooser that always draws the total (the last eligible record)."""
    return total


def resolved(resolver: S2SResolver, domain: str) -> list[Target]:
    result: list[Any] = []
    resolver.resolve(domain).addBoth(result.append)
    assert len(result) == 1
    if isinstance(result[0], Exception) or hasattr(result[0], "raiseException"):
        result[0].raiseException()
    return result[0]


class OrderTests(SynchronousTestCase):
    def test_priorityFirst(self) -> None:
        """If records have different priorities, lower priorities come first whatever the weights."""
        records = [SrvRecord(20, 100, 1, "c"), SrvRecord(5, 0, 2, "a"), SrvRecord(10, 50, 3, "b")]
        self.assertEqual([r.target for r in order_srv(records, last)], ["a", "b", "c"])

    def test_weightSelection(self) -> None:
        """
        If records share a priority, the draw picks the first whose running weight sum reaches it:
        a draw of 0 takes a zero-weight record first (RFC 2782 puts them at the beginning).
        """
        records = [SrvRecord(0, 10, 1, "ten"), SrvRecord(0, 0, 2, "zero"), SrvRecord(0, 30, 3, "thirty")]
        self.assertEqual([r.target for r in order_srv(records, first)], ["zero", "ten", "thirty"])
        self.assertEqual([r.target for r in order_srv(records, last)], ["thirty", "ten", "zero"])

    def test_weightsShareTheLoad(self) -> None:
        """
        If weights are 1 and 3, the heavier record is drawn first 3 times in 5: RFC 2782 draws from
        0 to the sum inclusive, so the draws 0 and 1 select the lighter one.
        """
        import random

        rng = random.Random(7)
        records = [SrvRecord(0, 1, 1, "light"), SrvRecord(0, 3, 2, "heavy")]
        counts = Counter(order_srv(records, lambda total: rng.randint(0, total))[0].target for _ in range(4000))
        self.assertTrue(2200 < counts["heavy"] < 2600, counts)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=12), st.randoms())
def test_orderIsAPermutationByPriority(pairs: list[tuple[int, int]], rng: Any) -> None:
    """Whatever the records and draws, the order is a permutation sorted by priority."""
    records = [SrvRecord(p, w, i, f"h{i}") for i, (p, w) in enumerate(pairs)]
    ordered = order_srv(records, lambda total: rng.randint(0, total))
    assert sorted(ordered, key=lambda r: r.port) == sorted(records, key=lambda r: r.port)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)


class PlanTests(SynchronousTestCase):
    def test_mixedDirectTlsAndStarttls(self) -> None:
        """If both services have records, they are ordered together and keep their TLS kind."""
        xmpps = [SrvRecord(10, 0, 5270, "tls.example.org.", True)]
        xmpp = [SrvRecord(5, 0, 5269, "xmpp.example.org.", False), SrvRecord(20, 0, 5269, "backup.example.org.")]
        targets = plan_targets("example.org", xmpps, xmpp, first)
        self.assertEqual(targets, [
            Target("xmpp.example.org", 5269, False, "SRV _xmpp-server"),
            Target("tls.example.org", 5270, True, "SRV _xmpps-server"),
            Target("backup.example.org", 5269, False, "SRV _xmpp-server"),
        ])

    def test_fallbackWithoutRecords(self) -> None:
        """If neither service has records, the domain itself is tried on 5269."""
        self.assertEqual(plan_targets("example.org", None, None, first), [Target("example.org", 5269)])

    def test_dotMeansNoService(self) -> None:
        """If _xmpp-server is a lone '.', the domain has no XMPP server: no fallback at all."""
        with self.assertRaises(ResolutionError):
            plan_targets("example.org", None, [SrvRecord(0, 0, 0, ".")], first)

    def test_directTlsDotStillUsesStarttls(self) -> None:
        """
        If only _xmpps-server is '.', STARTTLS records are used; with none, there is no A/AAAA
        fallback (XEP-0368 §4).
        """
        xmpp = [SrvRecord(0, 0, 5269, "xmpp.example.org")]
        self.assertEqual(plan_targets("example.org", [SrvRecord(0, 0, 0, ".")], xmpp, first),
                         [Target("xmpp.example.org", 5269, False, "SRV _xmpp-server")])
        with self.assertRaises(ResolutionError):
            plan_targets("example.org", [SrvRecord(0, 0, 0, ".")], None, first)

    def test_targetDescription(self) -> None:
        """If a target is printed for a log line, it says host, port, origin and TLS kind."""
        self.assertEqual(str(Target("::1", 5269, True, "SRV _xmpps-server")),
                         "[::1]:5269 (SRV _xmpps-server, direct TLS)")


class ResolverTests(SynchronousTestCase):
    def test_staticRouteSkipsDns(self) -> None:
        """If [s2s] hosts has a route for the domain, it is the only target and DNS is not asked."""
        fake = FakeDNS({})
        resolver = S2SResolver({"example.org": ("127.0.0.1", 15269)}, fake, first)
        self.assertEqual(resolved(resolver, "example.org"),
                         [Target("127.0.0.1", 15269, False, "static route [s2s] hosts")])
        self.assertEqual(fake.queries, [])

    def test_srvLookups(self) -> None:
        """If the domain publishes both SRV services, both are queried and the answers combined."""
        fake = FakeDNS({
            "_xmpps-server._tcp.example.org": [srv("_xmpps-server._tcp.example.org", 0, 0, 443, "a.example.org")],
            "_xmpp-server._tcp.example.org": [srv("_xmpp-server._tcp.example.org", 1, 0, 5269, "b.example.org")],
        })
        targets = resolved(S2SResolver({}, fake, first), "example.org")
        self.assertEqual(fake.queries, ["_xmpps-server._tcp.example.org", "_xmpp-server._tcp.example.org"])
        self.assertEqual([(t.host, t.port, t.direct_tls) for t in targets],
                         [("a.example.org", 443, True), ("b.example.org", 5269, False)])

    def test_nxdomainFallsBack(self) -> None:
        """If both SRV names do not exist, the domain is tried on 5269."""
        targets = resolved(S2SResolver({}, FakeDNS({}), first), "example.org")
        self.assertEqual(targets, [Target("example.org", 5269)])

    def test_serverFailureFallsBack(self) -> None:
        """If the SRV lookups fail (SERVFAIL), it still falls back to A/AAAA on 5269."""
        fake = FakeDNS({"_xmpp-server._tcp.example.org": DNSServerError("servfail")})
        self.assertEqual(resolved(S2SResolver({}, fake, first), "example.org"), [Target("example.org", 5269)])

    def test_dotRecordFails(self) -> None:
        """If _xmpp-server answers '.', resolution fails with ResolutionError."""
        fake = FakeDNS({"_xmpp-server._tcp.example.org": [srv("_xmpp-server._tcp.example.org", 0, 0, 0, "")]})
        with self.assertRaises(ResolutionError):
            resolved(S2SResolver({}, fake, first), "example.org")

    def test_unicodeDomainIsQueriedAsALabel(self) -> None:
        """If the domain is internationalised, the SRV query uses its A-label form."""
        fake = FakeDNS({})
        resolved(S2SResolver({}, fake, first), "bücher.example")
        self.assertEqual(fake.queries[1], "_xmpp-server._tcp.xn--bcher-kva.example")

"""RFC 3263 §4 server location for outbound SIP, against canned DNS answers."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_dns_helpers import FakeResolver, a, aaaa, naptr, srv
from unirtc.sip.locate import (
    MAX_HOPS,
    LocateError,
    Naptr,
    SipLocator,
    SystemResolver,
    make_locator,
    naptr_choices,
    static_hop,
)
from unirtc.sip.transport import Hop
from unirtc.sip.uri import SipURI, parse_uri

EXAMPLE = {
    "example.org": [naptr(20, 0, "SIP+D2U", "_sip._udp.example.org"),
                    naptr(10, 0, "SIP+D2T", "_sip._tcp.example.org"),
                    naptr(5, 0, "SIPS+D2T", "_sips._tcp.example.org"),
                    a("192.0.2.99")],
    "_sip._tcp.example.org": [srv(10, 0, 5070, "tcp1.example.org")],
    "_sip._udp.example.org": [srv(10, 0, 5060, "udp1.example.org"), srv(20, 0, 5060, "udp2.example.org")],
    "_sips._tcp.example.org": [srv(10, 0, 5061, "tls.example.org")],
    "tcp1.example.org": [a("192.0.2.10")],
    "udp1.example.org": [a("192.0.2.20"), aaaa("2001:db8::20")],
    "udp2.example.org": [a("192.0.2.21")],
    "tls.example.org": [a("192.0.2.30")],
}


def first(n: int) -> int:
    """An RFC 2782 chooser that always draws 0 (the first record of a priority)."""
    return 0


class LocateTestCase(SynchronousTestCase):
    def locate(self, uri: str, records: dict | None = None, broken: tuple[str, ...] = (),
               transports: tuple[str, ...] = ("UDP", "TCP")) -> list[Hop]:
        self.resolver = FakeResolver(EXAMPLE if records is None else records, broken)
        locator = SipLocator(self.resolver, transports, choose=first)
        target = parse_uri(uri)
        assert isinstance(target, SipURI)
        return self.successResultOf(locator.locate(target))


class NumericTests(LocateTestCase):
    def test_numericHostNeedsNoDns(self) -> None:
        """
        If the target host is an IP address, the hop is that address on the URI's port or
        5060 over UDP (TCP when transport=tcp), and DNS is never asked.
        """
        self.assertEqual(self.locate("sip:bob@192.0.2.5"), [Hop("UDP", "192.0.2.5", 5060)])
        self.assertEqual(self.locate("sip:bob@192.0.2.5:5080;transport=tcp"), [Hop("TCP", "192.0.2.5", 5080)])
        self.assertEqual(self.locate("sip:bob@[2001:db8::5]"), [Hop("UDP", "2001:db8::5", 5060)])
        self.assertEqual(self.resolver.queries, [])

    def test_maddrWins(self) -> None:
        """
        If the URI has maddr, that address is the target, not the host.
        """
        self.assertEqual(self.locate("sip:bob@example.org;maddr=192.0.2.7"), [Hop("UDP", "192.0.2.7", 5060)])

    def test_sipsWithoutTlsGivesNothing(self) -> None:
        """
        If the target is a sips: URI and TLS is not among the usable transports, there is no
        hop (never a downgrade to UDP or TCP).
        """
        self.assertEqual(self.locate("sips:bob@192.0.2.5"), [])
        self.assertEqual(self.locate("sips:bob@example.org"), [])
        self.assertEqual(self.locate("sips:bob@example.org", transports=("UDP", "TCP", "TLS")),
                         [Hop("TLS", "192.0.2.30", 5061)])

    def test_staticHopIsNoneForNames(self) -> None:
        """
        If the host is a name, static_hop has no answer (DNS must be asked).
        """
        self.assertIsNone(static_hop(SipURI(host="example.org"), ("UDP",)))


class NaptrTests(LocateTestCase):
    def test_naptrOrderThenSrvOrder(self) -> None:
        """
        If the domain has NAPTR records, the usable ones are followed in NAPTR order (TCP at
        order 10 before UDP at 20; TLS skipped as unusable), each SRV set in priority order,
        each target's A then AAAA addresses.
        """
        self.assertEqual(self.locate("sip:bob@example.org"), [
            Hop("TCP", "192.0.2.10", 5070),
            Hop("UDP", "192.0.2.20", 5060), Hop("UDP", "2001:db8::20", 5060),
            Hop("UDP", "192.0.2.21", 5060)])
        self.assertEqual(self.resolver.queries[0], ("NAPTR", "example.org"))

    def test_naptrChoicesFilter(self) -> None:
        """
        If NAPTR records have other flags, unknown services or no replacement, they are
        skipped; a sips: target keeps only SIPS+D2T; duplicates collapse.
        """
        records = [Naptr(10, 0, "u", "SIP+D2U", "x"), Naptr(10, 0, "s", "E2U+sip", "y"),
                   Naptr(10, 0, "s", "SIP+D2T", ""), Naptr(30, 0, "S", "sip+d2t", "_sip._tcp.z."),
                   Naptr(20, 0, "s", "SIPS+D2T", "_sips._tcp.z"), Naptr(40, 0, "s", "SIP+D2T", "_sip._tcp.z")]
        self.assertEqual(naptr_choices(records, False, ("UDP", "TCP", "TLS")),
                         [("TLS", "_sips._tcp.z"), ("TCP", "_sip._tcp.z")])
        self.assertEqual(naptr_choices(records, True, ("UDP", "TCP", "TLS")), [("TLS", "_sips._tcp.z")])
        self.assertEqual(naptr_choices(records, False, ("UDP",)), [])

    def test_noNaptrMeansSrvForEachTransport(self) -> None:
        """
        If the domain has no NAPTR records, SRV is asked for TCP then UDP (our preference),
        and the hops of both are returned in that order.
        """
        records = {k: v for k, v in EXAMPLE.items() if k != "example.org"}
        self.assertEqual(self.locate("sip:bob@example.org", records)[0], Hop("TCP", "192.0.2.10", 5070))
        self.assertEqual([q for q in self.resolver.queries if q[0] == "SRV"],
                         [("SRV", "_sip._tcp.example.org"), ("SRV", "_sip._udp.example.org")])

    def test_noNaptrNoSrvMeansAddressesOnUdp5060(self) -> None:
        """
        If the domain has neither NAPTR nor SRV records, its own A and AAAA addresses are
        used on UDP port 5060.
        """
        records = {"example.net": [a("198.51.100.5"), aaaa("2001:db8::5")]}
        self.assertEqual(self.locate("sip:bob@example.net", records),
                         [Hop("UDP", "198.51.100.5", 5060), Hop("UDP", "2001:db8::5", 5060)])

    def test_srvDotRulesOutTheFallback(self) -> None:
        """
        If the only SRV answer is the "." target, the service is not available there: no
        hop, and no A/AAAA fallback on the domain itself.
        """
        records = {"example.net": [a("198.51.100.5")], "_sip._udp.example.net": [srv(0, 0, 0, ".")]}
        self.assertEqual(self.locate("sip:bob@example.net", records), [])


class ExplicitTests(LocateTestCase):
    def test_explicitPortSkipsNaptrAndSrv(self) -> None:
        """
        If the URI names a port, only A/AAAA are asked and the hop uses that port over UDP.
        """
        self.assertEqual(self.locate("sip:bob@udp2.example.org:5099"), [Hop("UDP", "192.0.2.21", 5099)])
        self.assertEqual({q[0] for q in self.resolver.queries}, {"A", "AAAA"})

    def test_transportParameterSkipsNaptr(self) -> None:
        """
        If the URI says transport=tcp without a port, only the _sip._tcp SRV set is asked;
        without SRV records the domain's addresses are used on TCP 5060.
        """
        self.assertEqual(self.locate("sip:bob@example.org;transport=tcp"), [Hop("TCP", "192.0.2.10", 5070)])
        self.assertNotIn(("NAPTR", "example.org"), self.resolver.queries)
        self.assertEqual(self.locate("sip:bob@example.net;transport=tcp", {"example.net": [a("198.51.100.5")]}),
                         [Hop("TCP", "198.51.100.5", 5060)])


class FailureTests(LocateTestCase):
    def test_unknownDomainGivesNothing(self) -> None:
        """
        If every lookup is NXDOMAIN, there is no hop (and no error).
        """
        self.assertEqual(self.locate("sip:bob@nowhere.invalid", {}), [])

    def test_serverFailureIsNoRecords(self) -> None:
        """
        If the NAPTR lookup fails with SERVFAIL, the locator carries on with SRV as if there
        were no NAPTR records.
        """
        hops = self.locate("sip:bob@example.org", broken=("example.org",))
        self.assertEqual(hops[0], Hop("TCP", "192.0.2.10", 5070))

    def test_notADnsName(self) -> None:
        """
        If the host cannot be written as a DNS name (a label over 63 characters), the lookup
        fails with LocateError.
        """
        locator = SipLocator(FakeResolver(), choose=first)
        failure = self.failureResultOf(locator.locate(SipURI(host="a" * 64 + ".example")))
        failure.trap(LocateError)

    def test_hopsAreCapped(self) -> None:
        """
        If a domain publishes hundreds of SRV targets, at most MAX_HOPS hops are returned.
        """
        records = {"_sip._udp.big.example": [srv(i, 0, 5060, f"h{i}.big.example") for i in range(300)]}
        records.update({f"h{i}.big.example": [a(f"10.0.{i // 256}.{i % 256}")] for i in range(300)})
        self.assertEqual(len(self.locate("sip:bob@big.example;transport=udp", records)), MAX_HOPS)


class MakeLocatorTests(SynchronousTestCase):
    def test_offMeansNoLocator(self) -> None:
        """
        If [sip] outbound is off (or absent from the settings), there is no locator.
        """
        self.assertIsNone(make_locator(SimpleNamespace(sip=SimpleNamespace(outbound=False)), None))
        self.assertIsNone(make_locator(SimpleNamespace(sip=SimpleNamespace()), None))

    def test_onUsesTheGivenResolver(self) -> None:
        """
        If [sip] outbound is on, the locator asks the given resolver.
        """
        resolver = FakeResolver({"example.net": [a("198.51.100.5")]})
        locator = make_locator(SimpleNamespace(sip=SimpleNamespace(outbound=True)), None, resolver)
        hops = self.successResultOf(locator.locate(SipURI(host="example.net")))
        self.assertEqual(hops, [Hop("UDP", "198.51.100.5", 5060)])

    def test_systemResolverIsMadeOnFirstLookup(self) -> None:
        """
        If outbound is on without a resolver, none is created until the first lookup (twistd
        builds the service tree before daemonising).
        """
        locator = make_locator(SimpleNamespace(sip=SimpleNamespace(outbound=True)), Clock())
        self.assertIsInstance(locator.resolver, SystemResolver)
        self.assertIsNone(locator.resolver._resolver)


NAPTR_FIELDS = st.builds(Naptr, st.integers(0, 65535), st.integers(0, 65535), st.text(max_size=4),
                         st.sampled_from(["SIP+D2U", "SIP+D2T", "SIPS+D2T", "sip+d2u", "E2U+sip"]) | st.text(max_size=12),
                         st.text(max_size=40))


@given(st.lists(NAPTR_FIELDS, max_size=20), st.booleans(), st.sets(st.sampled_from(["UDP", "TCP", "TLS"])))
def test_naptrChoicesOnlyUsableTransports(records: list[Naptr], secure: bool, transports: set[str]) -> None:
    """
    If naptr_choices gets arbitrary NAPTR records, it never raises and offers only usable
    transports (only TLS for a sips: target), each with a non-empty SRV name.
    """
    for transport, name in naptr_choices(records, secure, transports):
        assert transport in transports and name
        assert not secure or transport == "TLS"

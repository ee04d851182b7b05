"""Outbound relay to foreign domains ([sip] outbound, RFC 3263) on the real core and proxy.

The same fake network as ``test_sip_proxy``: joe at 192.0.2.10:5060, the proxy at
192.0.2.1:5060.  example.org's servers are 203.0.113.5 and 203.0.113.6, found by a fake
locator or by the real ``SipLocator`` over canned DNS answers.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.protocol.test_sip_proxy import JOE, ProxyTestCase, reply, request
from tests.unit.sip_auth_helpers import authorization, challenges
from tests.unit.sip_dns_helpers import FakeResolver, a, naptr, srv
from unirtc.config import load_settings
from unirtc.sip.bindings import BindingStore
from unirtc.sip.locate import LocateError, SipLocator
from unirtc.sip.message import SipRequest, SipResponse, parse
from unirtc.sip.service import build_core
from unirtc.sip.transport import Hop
from unirtc.sip.uri import SipURI

SERVER_A = ("203.0.113.5", 5060)
SERVER_B = ("203.0.113.6", 5060)
BOB = "sip:bob@example.org"


class OutboundTestCase(ProxyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.asked: list[SipURI] = []
        self.answer: Deferred = succeed([Hop("UDP", *SERVER_A), Hop("UDP", *SERVER_B)])
        self.core.proxy.locator = self.locate

    def locate(self, uri: SipURI) -> Deferred:
        self.asked.append(uri)
        return self.answer

    def outbox(self) -> list[tuple[SipRequest | SipResponse, tuple[str, int]]]:
        """Everything written since the last call, with its destination."""
        written, self.udp.transport.written = self.udp.transport.written, []
        return [(parse(packet), addr) for packet, addr in written]

    def requests(self, to: tuple[str, int]) -> list[SipRequest]:
        return [m for m in self.sent(to) if isinstance(m, SipRequest)]

    def authenticated_route(self, route: str) -> bytes:
        """joe's MESSAGE to bob with a preloaded Route, answering the 407."""
        self.send(request("MESSAGE", uri=BOB, extra=(f"Route: {route}",)))
        [challenge] = [m for m in self.sent(JOE) if isinstance(m, SipResponse) and m.status == 407]
        fields = dict(uri=BOB, branch="z9hG4bK-c2", cseq=2)
        retry = parse(request("MESSAGE", extra=(f"Route: {route}",), **fields))
        value = authorization(challenges(challenge, proxy=True)[0], retry)
        return request("MESSAGE", extra=(f"Route: {route}", f"Proxy-Authorization: {value}"), **fields)


class RelayTests(OutboundTestCase):
    def test_outboundOffRefusesLocalUser(self) -> None:
        """
        If outbound is off (no locator), joe's authenticated MESSAGE to a foreign domain is
        refused with 403 after authentication, and nothing leaves for example.org.
        """
        self.core.proxy.locator = None
        self.send(self.authenticated("MESSAGE", uri=BOB))
        self.assertEqual(self.statuses(), [403])
        self.assertEqual(self.udp.transport.written, [])

    def test_authenticatedRequestIsRelayed(self) -> None:
        """
        If joe's authenticated INVITE is for sip:bob@example.org, it goes to the first server
        the locator found, with the Request-URI unchanged, our Via and Record-Route on top,
        Max-Forwards decremented and joe's credentials removed.
        """
        self.send(self.authenticated(uri=BOB))
        [forwarded] = self.requests(SERVER_A)
        self.assertEqual(str(forwarded.uri), BOB)
        self.assertEqual((forwarded.via[0].host, forwarded.via[0].port), ("192.0.2.1", 5060))
        self.assertEqual(forwarded.headers.get("Record-Route"), "<sip:192.0.2.1:5060;transport=udp;lr>")
        self.assertEqual(forwarded.max_forwards, 69)
        self.assertNotIn("Proxy-Authorization", forwarded.headers)
        self.assertEqual([str(u) for u in self.asked], [BOB])
        self.send(reply(forwarded, 200, "bob1"), SERVER_A)
        self.assertEqual(self.statuses(), [200])

    def test_unauthenticatedLocalUserIsChallenged(self) -> None:
        """
        If joe sends to a foreign domain without credentials, he gets 407 and the locator is
        never asked.
        """
        self.send(request("MESSAGE", uri=BOB))
        self.assertEqual(self.statuses(), [407])
        self.assertEqual(self.asked, [])

    def test_foreignToForeignStaysRefused(self) -> None:
        """
        If neither From nor the Request-URI is ours, outbound does not make us an open relay:
        403, and no DNS lookup.
        """
        self.send(request("MESSAGE", uri=BOB, from_="sip:mallory@example.net"))
        self.assertEqual(self.statuses(), [403])
        self.assertEqual(self.asked, [])

    def test_preloadedRouteIsLocated(self) -> None:
        """
        If joe's request carries a Route to a foreign proxy, that Route's URI is located, not
        the Request-URI.
        """
        self.send(self.authenticated_route("<sip:proxy.example.net;lr>"))
        self.assertEqual([str(u) for u in self.asked], ["sip:proxy.example.net;lr"])
        self.assertEqual([m.method for m in self.requests(SERVER_A)], ["MESSAGE"])

    def test_telUriIs416(self) -> None:
        """
        If joe's request is for a tel: URI (no SIP server to locate), he gets 416.
        """
        self.send(self.authenticated("MESSAGE", uri="tel:+15551234"))
        self.assertEqual(self.statuses()[-1], 416)


class LocationFailureTests(OutboundTestCase):
    def test_noServerIs404(self) -> None:
        """
        If the domain has no SIP server, joe gets 404 and nothing is sent.
        """
        self.answer = succeed([])
        self.send(self.authenticated("MESSAGE", uri=BOB))
        self.assertEqual(self.statuses(), [404])

    def test_lookupErrorIs404(self) -> None:
        """
        If the lookup fails (the host is no DNS name), joe gets 404.
        """
        self.answer = fail(LocateError("bad name"))
        self.send(self.authenticated("MESSAGE", uri=BOB))
        self.assertEqual(self.statuses(), [404])

    def test_cancelWhileLocating(self) -> None:
        """
        If joe CANCELs while DNS is still being asked, the INVITE gets 487 and the answer,
        when it comes, sends nothing.
        """
        self.answer = Deferred()
        self.send(self.authenticated(uri=BOB))
        self.send(request("CANCEL", uri=BOB, branch="z9hG4bK-c2", cseq=2))
        self.assertEqual(self.statuses(), [100, 200, 487])
        self.answer.callback([Hop("UDP", *SERVER_A)])
        self.assertEqual(self.sent(), [])


class FailoverTests(OutboundTestCase):
    def test_503MovesToTheNextServer(self) -> None:
        """
        If the first server answers 503, the proxy ACKs it (for INVITE) and sends the INVITE
        to the next server with a new Via branch; joe hears only the second server's answer.
        """
        self.send(self.authenticated(uri=BOB))
        [first] = self.requests(SERVER_A)
        self.send(reply(first, 503, "a"), SERVER_A)
        out = self.outbox()
        self.assertEqual([(m.method, to) for m, to in out], [("ACK", SERVER_A), ("INVITE", SERVER_B)])
        second = out[1][0]
        self.assertNotEqual(second.via[0].branch, first.via[0].branch)
        self.send(reply(second, 486, "b"), SERVER_B)
        self.assertEqual(self.statuses(), [486])

    def test_timeoutMovesToTheNextServer(self) -> None:
        """
        If the first server never answers a MESSAGE, Timer F (32 s) moves it to the next
        server; when that one times out too, joe gets 408.
        """
        self.send(self.authenticated("MESSAGE", uri=BOB))
        self.clock.pump([0.5] * 66)
        self.assertEqual({m.method for m in self.requests(SERVER_B)}, {"MESSAGE"})
        self.clock.pump([0.5] * 66)
        self.assertEqual(self.statuses(), [408])

    def test_lastServerFailureIsFinal(self) -> None:
        """
        If every server answers 503, joe gets one final response: 500 (a 503 is never passed
        on as ours).
        """
        self.send(self.authenticated("MESSAGE", uri=BOB))
        self.send(reply(self.requests(SERVER_A)[0], 503, "a"), SERVER_A)
        self.send(reply(self.requests(SERVER_B)[0], 503, "b"), SERVER_B)
        self.assertEqual(self.statuses(), [500])

    def test_provisionalThenFailureDoesNotFailOver(self) -> None:
        """
        If the first server has already sent 180 before failing, the call is not retried
        elsewhere (the callee may have rung): joe gets the failure.
        """
        self.send(self.authenticated(uri=BOB))
        [first] = self.requests(SERVER_A)
        self.send(reply(first, 180, "a"), SERVER_A)
        self.send(reply(first, 503, "a"), SERVER_A)
        out = self.outbox()
        self.assertEqual([to for _, to in out if to == SERVER_B], [])
        self.assertEqual([m.status for m, to in out if to == JOE], [180, 500])


class DnsTests(ProxyTestCase):
    def test_naptrAndSrvChooseTheServer(self) -> None:
        """
        If the real locator is used with example.org publishing NAPTR -> _sip._udp SRV ->
        A, joe's MESSAGE goes to the SRV target's address and port.
        """
        resolver = FakeResolver({
            "example.org": [naptr(10, 0, "SIP+D2U", "_sip._udp.example.org")],
            "_sip._udp.example.org": [srv(0, 0, 5080, "sip.example.org")],
            "sip.example.org": [a(SERVER_A[0])],
        })
        self.core.proxy.locator = SipLocator(resolver, choose=lambda total: 0)
        self.send(self.authenticated("MESSAGE", uri=BOB))
        sent = self.sent((SERVER_A[0], 5080))
        self.assertEqual([m.method for m in sent if isinstance(m, SipRequest)], ["MESSAGE"])
        self.assertEqual([m for m in self.sent(JOE) if isinstance(m, SipResponse)], [])


class OutboundSettingTests(SynchronousTestCase):
    def core(self, outbound: str):
        folder = Path(self.mktemp())
        folder.mkdir()
        (folder / "u.ini").write_text(f"[server]\ndomain = falcot.com\n[sip]\noutbound = {outbound}\n")
        return build_core(load_settings(folder / "u.ini"), None, MemoryReactorClock(), b"k" * 32, BindingStore())

    def test_outboundSettingGivesTheProxyALocator(self) -> None:
        """
        If [sip] outbound = yes, the server's proxy gets a DNS locator for foreign domains; with
        the default (no) it has none, so foreign domains stay 403.
        """
        self.assertIsInstance(self.core("yes").proxy.locator, SipLocator)
        self.assertIsNone(self.core("no").proxy.locator)

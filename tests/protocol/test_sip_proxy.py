"""The stateful proxy on the real core and transaction layer, over fake UDP and TCP transports.

The caller is 192.0.2.10:5060 (joe), roland's phones are 198.51.100.1:5060 and
198.51.100.2:5060; the proxy listens on 192.0.2.1:5060.  Time is a ``Clock``.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_auth_helpers import NOW, FakeDirectory, authorization, challenges, settings
from unirtc.sip.digest import DigestAuthenticator, domain_map
from unirtc.sip.message import SipRequest, SipResponse, make_response, parse
from unirtc.sip.proxy import Proxy, best_response, loop_hash
from unirtc.sip.service import SipCore
from unirtc.sip.transport import SipDatagramProtocol, SipStreamFactory, Transports

PROXY = ("192.0.2.1", 5060)
JOE = ("192.0.2.10", 5060)
PHONE_A = ("198.51.100.1", 5060)
PHONE_B = ("198.51.100.2", 5060)


class FakeBindings:
    def __init__(self) -> None:
        self.table: dict[tuple[str, str], list] = {}

    def add(self, localpart: str, contact: str, flow: str | None = None, source=None) -> None:
        self.table.setdefault((localpart, "falcot.com"), []).append(
            SimpleNamespace(contact=contact, flow=flow, source=source))

    def lookup(self, aor: tuple[str, str], now: float) -> list:
        return self.table.get(aor, [])


def request(method: str = "INVITE", uri: str = "sip:roland@falcot.com", from_: str = "sip:joe@falcot.com",
            to_tag: str = "", extra: tuple[str, ...] = (), branch: str = "z9hG4bK-c1", cseq: int = 1,
            max_forwards: int = 70, call_id: str = "call-1") -> bytes:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {JOE[0]}:{JOE[1]};branch={branch};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_}>;tag=joe1",
        "To: <sip:roland@falcot.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:joe@{JOE[0]}:{JOE[1]}>",
        *extra,
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def reply(req: SipRequest, status: int, tag: str = "rol1") -> bytes:
    return bytes(make_response(req, status, to_tag=None if status == 100 else tag))


class ProxyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.core = SipCore(self.clock)
        self.core.transports = Transports(self.core, self.clock, "falcot.com")
        self.core.transports.listeners = [("UDP", PROXY[0], PROXY[1]), ("TCP", PROXY[0], PROXY[1])]
        self.udp = SipDatagramProtocol(self.core.transports)
        self.udp.transport = FakeDatagramTransport()
        self.udp.startProtocol()
        self.directory = FakeDirectory()
        self.directory.add("joe")
        self.directory.add("roland")
        self.bindings = FakeBindings()
        realm_for = domain_map(settings())
        self.auth = DigestAuthenticator(self.directory, b"k" * 32, self.clock, realm_for)
        self.core.proxy = Proxy(self.core, self.clock, realm_for, "falcot.com", self.directory,
                                self.bindings, self.auth)

    def send(self, data: bytes, source: tuple[str, int] = JOE) -> None:
        self.udp.datagramReceived(data, source)

    def sent(self, to: tuple[str, int] | None = None) -> list:
        """Messages written since the last call, optionally only those to ``to``."""
        written, self.udp.transport.written = self.udp.transport.written, []
        return [parse(packet) for packet, addr in written if to is None or addr == to]

    def statuses(self, to: tuple[str, int] = JOE) -> list[int]:
        return [m.status for m in self.sent(to) if isinstance(m, SipResponse)]

    def authenticated(self, method: str = "INVITE", **kwargs) -> bytes:
        """Send ``method`` unauthenticated, read the 407, and build the authenticated retry."""
        self.send(request(method, **kwargs))
        challenge = [m for m in self.sent(JOE) if isinstance(m, SipResponse) and m.status == 407][0]
        kwargs["branch"] = "z9hG4bK-c2"
        kwargs["cseq"] = 2
        retry = parse(request(method, **kwargs))
        value = authorization(challenges(challenge, proxy=True)[0], retry)
        return request(method, extra=(f"Proxy-Authorization: {value}",), **kwargs)

    def call(self, method: str = "INVITE") -> dict[tuple[str, int], SipRequest]:
        """joe's authenticated request forked to roland's two phones: branch per phone."""
        self.bindings.add("roland", f"sip:roland@{PHONE_A[0]}:{PHONE_A[1]}")
        self.bindings.add("roland", f"sip:roland@{PHONE_B[0]}:{PHONE_B[1]}")
        self.send(self.authenticated(method))
        written, self.udp.transport.written = self.udp.transport.written, []
        return {to: next(parse(p) for p, addr in written if addr == to) for to in (PHONE_A, PHONE_B)}


class RoutingTests(ProxyTestCase):
    def test_optionsToServerGets200WithAllow(self) -> None:
        """
        If OPTIONS is addressed to the server itself, it answers 200 with Allow, without
        asking for credentials.
        """
        self.send(request("OPTIONS", uri="sip:192.0.2.1:5060"))
        [response] = self.sent(JOE)
        self.assertEqual(response.status, 200)
        self.assertIn("INVITE", response.headers.get("Allow"))
        self.assertIn("MESSAGE", response.headers.get("Allow"))

    def test_localUserMustAuthenticate(self) -> None:
        """
        If joe sends an INVITE without credentials, he gets 100 then 407 with an MD5 challenge
        first and a SHA-256 one second.
        """
        self.send(request())
        responses = self.sent(JOE)
        self.assertEqual([r.status for r in responses], [100, 407])
        self.assertEqual([c["algorithm"] for c in challenges(responses[1], proxy=True)], ["MD5", "SHA-256"])

    def test_forksToEveryBinding(self) -> None:
        """
        If an authenticated INVITE is for roland with two bindings, a copy goes to each
        contact, with our Via on top, a Record-Route with lr, Max-Forwards decremented and
        the checked Proxy-Authorization removed.
        """
        branches = self.call()
        for to, forwarded in branches.items():
            self.assertEqual(str(forwarded.uri), f"sip:roland@{to[0]}:{to[1]}")
            top = forwarded.via[0]
            self.assertEqual((top.host, top.port), PROXY)
            self.assertTrue(top.branch.startswith("z9hG4bK" + loop_hash(parse(request(cseq=2))) + "."))
            self.assertEqual(forwarded.via[1].received, JOE[0])
            self.assertEqual(forwarded.headers.get("Record-Route"), "<sip:192.0.2.1:5060;transport=udp;lr>")
            self.assertEqual(forwarded.max_forwards, 69)
            self.assertNotIn("Proxy-Authorization", forwarded.headers)
        self.assertNotEqual(branches[PHONE_A].via[0].branch, branches[PHONE_B].via[0].branch)

    def test_noBindingIs480(self) -> None:
        """
        If roland exists but has no binding, the caller gets 480.
        """
        self.send(self.authenticated())
        self.assertEqual(self.statuses(), [100, 480])

    def test_unknownUserIs404(self) -> None:
        """
        If the Request-URI names no account, the caller gets 404.
        """
        self.send(self.authenticated(uri="sip:nobody@falcot.com"))
        self.assertEqual(self.statuses(), [100, 404])

    def test_aliasDomainMapsToAccountDomain(self) -> None:
        """
        If the Request-URI uses the SIP alias domain, roland's bindings are found.
        """
        self.bindings.add("roland", f"sip:roland@{PHONE_A[0]}")
        self.send(self.authenticated(uri="sip:roland@sip.falcot.com"))
        self.assertEqual([m.method for m in self.sent(PHONE_A)], ["INVITE"])

    def test_maxForwardsZeroIs483(self) -> None:
        """
        If Max-Forwards is 0, the request is answered 483 and not forwarded.
        """
        self.send(request("MESSAGE", max_forwards=0, from_="sip:x@example.org"))
        self.assertEqual(self.statuses(), [483])

    def test_foreignToForeignIs403(self) -> None:
        """
        If neither From nor the Request-URI is ours, relaying is refused with 403.
        """
        self.send(request("MESSAGE", uri="sip:bob@example.org", from_="sip:x@example.org"))
        self.assertEqual(self.statuses(), [403])

    def test_foreignCallerReachesLocalUserWithoutAuth(self) -> None:
        """
        If a foreign user sends MESSAGE to roland, it is forwarded without a challenge.
        """
        self.bindings.add("roland", f"sip:roland@{PHONE_A[0]}")
        self.send(request("MESSAGE", from_="sip:bob@example.org"))
        self.assertEqual([m.method for m in self.sent(PHONE_A)], ["MESSAGE"])

    def test_spoofedFromIs403(self) -> None:
        """
        If joe authenticates but the From names roland, the request is refused with 403.
        """
        self.send(request(from_="sip:roland@falcot.com"))
        challenge = [m for m in self.sent(JOE) if m.status == 407][0]
        retry = parse(request(from_="sip:roland@falcot.com", branch="z9hG4bK-c2", cseq=2))
        value = authorization(challenges(challenge, proxy=True)[0], retry, username="joe")
        self.send(request(from_="sip:roland@falcot.com", branch="z9hG4bK-c2", cseq=2,
                          extra=(f"Proxy-Authorization: {value}",)))
        self.assertEqual(self.statuses(), [100, 403])

    def test_loopIsDetected(self) -> None:
        """
        If a request comes back with one of our Vias carrying its own loop hash, it is
        answered 482.
        """
        probe = parse(request("MESSAGE", from_="sip:x@example.org"))
        ours = f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{loop_hash(probe)}.abc"
        data = request("MESSAGE", from_="sip:x@example.org").replace(b"Max-Forwards", ours.encode() + b"\r\nMax-Forwards")
        self.send(data)
        self.assertEqual(self.statuses(), [482])

    def test_retransmittedInviteIsNotForkedAgain(self) -> None:
        """
        If the caller retransmits the INVITE, the proxy answers from its server transaction
        and sends no new branch.
        """
        invite = self.authenticated()
        self.bindings.add("roland", f"sip:roland@{PHONE_A[0]}")
        self.send(invite)
        self.assertEqual(len(self.sent(PHONE_A)), 1)
        self.send(invite)
        self.assertEqual(self.sent(PHONE_A), [])


class ResponseTests(ProxyTestCase):
    def test_successIsForwardedAndOtherBranchCancelled(self) -> None:
        """
        If both phones ring and one answers 200, the 180s and the 200 go to the caller, the
        other branch gets a CANCEL, and its 487 is ACKed by the proxy but not forwarded.
        """
        branches = self.call()
        self.send(reply(branches[PHONE_A], 180, "a"), PHONE_A)
        self.send(reply(branches[PHONE_B], 180, "b"), PHONE_B)
        self.assertEqual(self.statuses(), [180, 180])
        self.send(reply(branches[PHONE_B], 200, "b"), PHONE_B)
        messages = self.sent()
        self.assertEqual([m.status for m in messages if isinstance(m, SipResponse)], [200])
        [cancel] = [m for m in messages if isinstance(m, SipRequest)]
        self.assertEqual((cancel.method, cancel.via[0].branch), ("CANCEL", branches[PHONE_A].via[0].branch))
        self.send(reply(branches[PHONE_A], 487, "a"), PHONE_A)
        messages = self.sent()
        self.assertEqual([m.method for m in messages if isinstance(m, SipRequest)], ["ACK"])
        self.assertEqual([m for m in messages if isinstance(m, SipResponse)], [])

    def test_forwardedResponseLosesOurVia(self) -> None:
        """
        If a response is forwarded upstream, our Via is gone and the caller's is on top.
        """
        branches = self.call()
        self.send(reply(branches[PHONE_A], 180, "a"), PHONE_A)
        [ringing] = self.sent(JOE)
        self.assertEqual(ringing.via[0].branch, "z9hG4bK-c2")
        self.assertEqual(len(ringing.via), 1)

    def test_allFailBestIsChosen(self) -> None:
        """
        If every branch fails, the caller gets one final response, chosen by §16.7: here the
        486 over the 503 (which would have become 500).
        """
        branches = self.call()
        self.send(reply(branches[PHONE_A], 503, "a"), PHONE_A)
        self.assertEqual(self.statuses(), [])
        self.send(reply(branches[PHONE_B], 486, "b"), PHONE_B)
        self.assertEqual(self.statuses(), [486])

    def test_bestResponseRules(self) -> None:
        """
        If responses are compared, a 6xx wins, then the lowest class, preferring 401/407 in
        4xx with challenges merged, and a chosen 503 becomes 500.
        """
        req = parse(request())

        def resp(status: int, challenge: str | None = None) -> SipResponse:
            r = make_response(req, status, to_tag="t")
            if challenge:
                r.headers.add("Proxy-Authenticate", challenge)
            return r

        self.assertEqual(best_response([resp(486), resp(603), resp(302)]).status, 603)
        self.assertEqual(best_response([resp(500), resp(404)]).status, 404)
        self.assertEqual(best_response([resp(503)]).status, 500)
        merged = best_response([resp(404), resp(407, "Digest a"), resp(407, "Digest b")])
        self.assertEqual(merged.headers.get_all("Proxy-Authenticate"), ["Digest a", "Digest b"])
        self.assertIsNone(best_response([]))

    def test_timeoutGives408(self) -> None:
        """
        If no phone ever answers, the INVITE branches are retransmitted on Timer A and the
        caller gets 408 once Timer B fires on both.
        """
        self.call()
        self.clock.advance(0.5)
        self.assertEqual([m.method for m in self.sent(PHONE_A)], ["INVITE"])
        for _ in range(70):
            self.clock.advance(0.5)
        self.assertIn(408, self.statuses())

    def test_messageIsForkedAndFirst2xxForwarded(self) -> None:
        """
        If a MESSAGE is forked and both phones accept, only the first 200 goes upstream.
        """
        branches = self.call("MESSAGE")
        self.send(reply(branches[PHONE_A], 200, "a"), PHONE_A)
        self.send(reply(branches[PHONE_B], 200, "b"), PHONE_B)
        self.assertEqual(self.statuses(), [200])

    def test_cancelStopsTheCall(self) -> None:
        """
        If the caller CANCELs while one phone rings and the other has not answered, the
        CANCEL gets 200, the ringing phone gets a CANCEL, the silent one none, and the caller
        gets the 487 once the ringing phone answers it.
        """
        branches = self.call()
        self.send(reply(branches[PHONE_A], 180, "a"), PHONE_A)
        self.sent()
        self.send(request("CANCEL", branch="z9hG4bK-c2", cseq=2))
        messages = self.sent()
        self.assertEqual([m.status for m in messages if isinstance(m, SipResponse)], [200])
        self.assertEqual([m.method for m in messages if isinstance(m, SipRequest)], ["CANCEL"])
        self.assertEqual(messages[-1].uri, branches[PHONE_A].uri)
        self.send(reply(branches[PHONE_A], 487, "a"), PHONE_A)
        self.assertEqual(self.statuses(), [487])

    def test_cancelBeforeAnyRingIsAnswered487AtOnce(self) -> None:
        """
        If the caller CANCELs before any phone sent a provisional, no CANCEL is sent to the
        phones (they get one only once they ring) and the caller gets 487 at once.
        """
        branches = self.call()
        self.send(request("CANCEL", branch="z9hG4bK-c2", cseq=2))
        messages = self.sent()
        self.assertEqual([m.status for m in messages if isinstance(m, SipResponse)], [200, 487])
        self.assertEqual([m for m in messages if isinstance(m, SipRequest)], [])
        self.send(reply(branches[PHONE_B], 180, "b"), PHONE_B)
        self.assertEqual([m.method for m in self.sent(PHONE_B)], ["CANCEL"])

    def test_cancelWhileLookingUp(self) -> None:
        """
        If the CANCEL arrives while the callee's account is still being read, the INVITE gets
        487 and is never forked.
        """
        pending: Deferred = Deferred()
        read = self.directory.credentials
        self.directory.credentials = lambda user, domain: pending if user == "roland" else read(user, domain)
        self.bindings.add("roland", f"sip:roland@{PHONE_A[0]}")
        self.send(self.authenticated())
        self.send(request("CANCEL", branch="z9hG4bK-c2", cseq=2))
        self.assertEqual(self.statuses(), [100, 200, 487])
        pending.callback(self.directory.accounts[("roland", "falcot.com")])
        self.assertEqual(self.sent(), [])

    def test_cancelWithoutInviteIs481(self) -> None:
        """
        If a CANCEL matches no INVITE, it is answered 481.
        """
        self.send(request("CANCEL", branch="z9hG4bK-none"))
        self.assertEqual(self.statuses(), [481])

    def test_stray2xxRetransmissionIsForwarded(self) -> None:
        """
        If the callee retransmits its 200 after the branch transaction is gone, the proxy
        still passes it upstream (statelessly, by the Via).
        """
        branches = self.call()
        self.send(reply(branches[PHONE_A], 200, "a"), PHONE_A)
        self.assertIn(200, self.statuses())
        self.clock.advance(40)
        self.sent()
        self.send(reply(branches[PHONE_A], 200, "a"), PHONE_A)
        self.assertEqual(self.statuses(), [200])


class DialogTests(ProxyTestCase):
    def test_inDialogByeFollowsRoute(self) -> None:
        """
        If a BYE carries our Record-Route as its Route, it goes to the Request-URI (the
        remote contact) without authentication, with our Route removed and no new
        Record-Route.
        """
        route = "Route: <sip:192.0.2.1:5060;transport=udp;lr>"
        self.send(request("BYE", uri=f"sip:roland@{PHONE_A[0]}:{PHONE_A[1]}", to_tag="rol1", extra=(route,)))
        [bye] = self.sent(PHONE_A)
        self.assertEqual(bye.method, "BYE")
        self.assertNotIn("Route", bye.headers)
        self.assertNotIn("Record-Route", bye.headers)
        self.send(reply(bye, 200), PHONE_A)
        self.assertEqual(self.statuses(), [200])

    def test_inDialogWithoutOurRouteIs404(self) -> None:
        """
        If an in-dialog request does not route through us, it is refused with 404.
        """
        self.send(request("BYE", uri=f"sip:roland@{PHONE_A[0]}", to_tag="rol1"))
        self.assertEqual(self.statuses(), [404])

    def test_ackFor2xxIsForwardedStatelessly(self) -> None:
        """
        If the ACK for a 2xx arrives with our Route, it is forwarded to the contact with our
        Via, the same branch on retransmission, and no response.
        """
        route = "Route: <sip:192.0.2.1:5060;transport=udp;lr>"
        ack = request("ACK", uri=f"sip:roland@{PHONE_A[0]}:{PHONE_A[1]}", to_tag="rol1", extra=(route,),
                      branch="z9hG4bK-ack")
        self.send(ack)
        self.send(ack)
        first, second = self.sent(PHONE_A)
        self.assertEqual(first.method, "ACK")
        self.assertEqual(first.via[0].branch, second.via[0].branch)
        self.assertEqual(self.sent(JOE), [])

    def test_strayAckIsDropped(self) -> None:
        """
        If an ACK matches nothing and does not route through us, it is dropped.
        """
        self.send(request("ACK", uri=f"sip:roland@{PHONE_A[0]}", to_tag="rol1"))
        self.assertEqual(self.sent(), [])


class FlowTests(ProxyTestCase):
    def test_requestReusesRegisteredFlow(self) -> None:
        """
        If roland registered over TCP (the binding holds the flow token), the INVITE goes
        over that connection, the Via says TCP, and the Record-Route is doubled (UDP in, TCP
        out) carrying the flow token.
        """
        protocol = SipStreamFactory(self.core.transports, "TCP").buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.5", 40001))
        protocol.makeConnection(transport)
        self.bindings.add("roland", "sip:roland@10.0.0.5:5060;transport=tcp", flow=protocol.token)
        self.send(self.authenticated())
        invite = parse(transport.value(), stream=True)
        self.assertEqual(invite.method, "INVITE")
        self.assertEqual(invite.via[0].transport, "TCP")
        self.assertEqual(invite.headers.get_list("Record-Route"), [
            f"<sip:{protocol.token}@192.0.2.1:5060;transport=tcp;lr>",
            f"<sip:{protocol.token}@192.0.2.1:5060;transport=udp;lr>",
        ])
        # roland's BYE comes back over the flow; joe's BYE later goes back over it too.
        route = f"Route: <sip:{protocol.token}@192.0.2.1:5060;transport=udp;lr>"
        transport.clear()
        self.send(request("BYE", uri="sip:roland@10.0.0.5:5060;transport=tcp", to_tag="r",
                          extra=(route,), branch="z9hG4bK-bye"))
        self.assertEqual(parse(transport.value(), stream=True).method, "BYE")

    def test_natedBindingUsesSource(self) -> None:
        """
        If a UDP binding's contact is a private address different from where the REGISTER
        came from, requests go to that source address.
        """
        self.bindings.add("roland", "sip:roland@10.0.0.5:5060", source=PHONE_B)
        self.send(self.authenticated())
        self.assertEqual([m.method for m in self.sent(PHONE_B)], ["INVITE"])

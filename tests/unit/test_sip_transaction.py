"""RFC 3261 §17 transaction state machines, driven with explicit times and no reactor."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from unirtc.sip.message import SipRequest, SipResponse, make_response, parse
from unirtc.sip.transaction import (
    TIMER_T1,
    TIMER_T2,
    TIMER_T4,
    CancelTimer,
    ClientTransaction,
    Deliver,
    Send,
    ServerTransaction,
    StartTimer,
    State,
    Terminated,
    client_key,
    make_ack,
    server_key,
)

PEER = ("192.0.2.10", 5060)
BRANCH = "z9hG4bK776asdhds"


def request(method: str = "INVITE", branch: str = BRANCH, cseq_method: str | None = None) -> SipRequest:
    text = (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:proxy.example.com;lr>\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: 314159 {cseq_method or method}\r\n"
        "Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse(text)
    assert isinstance(message, SipRequest)
    return message


def response(req: SipRequest, status: int) -> SipResponse:
    return make_response(req, status, to_tag=None if status == 100 else "a6c85cf")


def sends(actions: list) -> list[bytes]:
    return [a.data for a in actions if isinstance(a, Send)]


def delivered(actions: list) -> list:
    return [a.message for a in actions if isinstance(a, Deliver)]


class InviteServerTransactionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.invite = request()
        self.tx = ServerTransaction(self.invite, PEER, reliable=False)

    def test_firstInviteIsTriedAndDelivered(self) -> None:
        """
        If an INVITE arrives, the transaction sends 100 Trying at once and delivers the
        request to the TU exactly once.
        """
        actions = self.tx.receive(self.invite, 0.0)
        self.assertEqual([parse(b).status for b in sends(actions)], [100])
        self.assertEqual(delivered(actions), [self.invite])
        self.assertEqual(self.tx.state, State.PROCEEDING)

    def test_retransmittedInviteGetsLastProvisional(self) -> None:
        """
        If the INVITE is retransmitted while Proceeding, the last provisional response is
        sent again and nothing is delivered to the TU.
        """
        self.tx.receive(self.invite, 0.0)
        ringing = response(self.invite, 180)
        self.tx.send_response(ringing, 0.1)
        actions = self.tx.receive(self.invite, 0.5)
        self.assertEqual(actions, [Send(bytes(ringing), PEER)])

    def test_timerGRetransmitsFinalDoublingUpToT2(self) -> None:
        """
        If a 486 has been sent over UDP and no ACK arrives, Timer G resends it with the
        interval doubling from T1 up to T2.
        """
        self.tx.receive(self.invite, 0.0)
        busy = response(self.invite, 486)
        actions = self.tx.send_response(busy, 0.0)
        self.assertIn(StartTimer("G", TIMER_T1), actions)
        self.assertIn(StartTimer("H", 64 * TIMER_T1), actions)
        intervals = []
        for _ in range(5):
            fired = self.tx.on_timer("G", 0.0)
            self.assertEqual(sends(fired), [bytes(busy)])
            intervals += [a.delay for a in fired if isinstance(a, StartTimer)]
        self.assertEqual(intervals, [1.0, 2.0, 4.0, TIMER_T2, TIMER_T2])

    def test_ackConfirmsAndTimerITerminates(self) -> None:
        """
        If the ACK for a non-2xx arrives, G and H stop, Timer I (T4) starts, further ACKs are
        absorbed, and Timer I terminates the transaction; the ACK never reaches the TU.
        """
        self.tx.receive(self.invite, 0.0)
        busy = response(self.invite, 486)
        self.tx.send_response(busy, 0.0)
        ack = make_ack(self.invite, busy)
        self.assertEqual(server_key(ack), self.tx.key)
        actions = self.tx.receive(ack, 0.2)
        self.assertEqual(actions, [CancelTimer("G"), CancelTimer("H"), StartTimer("I", TIMER_T4)])
        self.assertEqual(self.tx.receive(ack, 0.3), [])
        self.assertEqual(self.tx.on_timer("I", 5.2), [Terminated()])

    def test_timerHTerminatesWithoutAck(self) -> None:
        """
        If no ACK arrives before Timer H, the transaction terminates.
        """
        self.tx.receive(self.invite, 0.0)
        self.tx.send_response(response(self.invite, 404), 0.0)
        self.assertEqual(self.tx.on_timer("H", 32.0), [CancelTimer("G"), Terminated()])
        self.assertEqual(self.tx.state, State.TERMINATED)

    def test_retransmittedInviteAfterFinalGetsFinal(self) -> None:
        """
        If the INVITE is retransmitted after a final non-2xx, the final response is resent.
        """
        self.tx.receive(self.invite, 0.0)
        busy = response(self.invite, 486)
        self.tx.send_response(busy, 0.0)
        self.assertEqual(self.tx.receive(self.invite, 1.0), [Send(bytes(busy), PEER)])

    def test_successIsAcceptedAndAbsorbsRetransmissions(self) -> None:
        """
        If the TU sends a 2xx, the transaction waits in Accepted for Timer L (RFC 6026):
        retransmitted INVITEs are absorbed, further 2xx from the TU still go out, and an ACK
        that matches is handed to the TU.
        """
        self.tx.receive(self.invite, 0.0)
        ok = response(self.invite, 200)
        self.assertEqual(self.tx.send_response(ok, 0.0), [Send(bytes(ok), PEER), StartTimer("L", 32.0)])
        self.assertEqual(self.tx.receive(self.invite, 0.5), [])
        self.assertEqual(self.tx.send_response(ok, 0.6), [Send(bytes(ok), PEER)])
        ack = request("ACK", cseq_method="ACK")
        self.assertEqual(delivered(self.tx.receive(ack, 0.7)), [ack])
        self.assertEqual(self.tx.on_timer("L", 32.0), [Terminated()])

    def test_reliableTransportSkipsTimerGAndI(self) -> None:
        """
        If the transport is reliable, a final response starts Timer H but not G, and the ACK
        terminates the transaction at once (Timer I is zero).
        """
        tx = ServerTransaction(self.invite, PEER, reliable=True)
        tx.receive(self.invite, 0.0)
        busy = response(self.invite, 486)
        actions = tx.send_response(busy, 0.0)
        self.assertNotIn("G", [a.name for a in actions if isinstance(a, StartTimer)])
        self.assertIn(StartTimer("H", 32.0), actions)
        self.assertEqual(tx.receive(make_ack(self.invite, busy), 0.1)[-1], Terminated())

    def test_responsesAfterFinalAreIgnored(self) -> None:
        """
        If the TU sends another response after a final non-2xx, nothing is sent.
        """
        self.tx.receive(self.invite, 0.0)
        self.tx.send_response(response(self.invite, 486), 0.0)
        self.assertEqual(self.tx.send_response(response(self.invite, 200), 0.1), [])

    def test_lateTimersAreIgnored(self) -> None:
        """
        If a timer fires in a state it does not belong to, nothing happens.
        """
        self.tx.receive(self.invite, 0.0)
        for name in "GHIJL":
            self.assertEqual(self.tx.on_timer(name, 1.0), [])


class NonInviteServerTransactionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.bye = request("BYE")
        self.tx = ServerTransaction(self.bye, PEER, reliable=False)

    def test_deliveredOnceWithoutTrying(self) -> None:
        """
        If a BYE arrives, it is delivered without a 100, and retransmissions while Trying are
        absorbed.
        """
        self.assertEqual(self.tx.receive(self.bye, 0.0), [Deliver(self.bye)])
        self.assertEqual(self.tx.receive(self.bye, 0.5), [])
        self.assertEqual(self.tx.state, State.TRYING)

    def test_provisionalMovesToProceeding(self) -> None:
        """
        If the TU sends a provisional, the state is Proceeding and retransmissions get it again.
        """
        self.tx.receive(self.bye, 0.0)
        trying = response(self.bye, 100)
        self.tx.send_response(trying, 0.0)
        self.assertEqual(self.tx.state, State.PROCEEDING)
        self.assertEqual(self.tx.receive(self.bye, 0.5), [Send(bytes(trying), PEER)])

    def test_finalStartsTimerJAndIsResent(self) -> None:
        """
        If the TU sends a final response over UDP, Timer J (64*T1) starts, retransmitted
        requests get the final again, and Timer J terminates the transaction.
        """
        self.tx.receive(self.bye, 0.0)
        ok = response(self.bye, 200)
        self.assertEqual(self.tx.send_response(ok, 0.0), [Send(bytes(ok), PEER), StartTimer("J", 32.0)])
        self.assertEqual(self.tx.receive(self.bye, 1.0), [Send(bytes(ok), PEER)])
        self.assertEqual(self.tx.on_timer("J", 32.0), [Terminated()])

    def test_reliableFinalTerminatesAtOnce(self) -> None:
        """
        If the transport is reliable, the final response terminates the transaction (Timer J
        is zero).
        """
        tx = ServerTransaction(self.bye, PEER, reliable=True)
        tx.receive(self.bye, 0.0)
        ok = response(self.bye, 200)
        self.assertEqual(tx.send_response(ok, 0.0), [Send(bytes(ok), PEER), Terminated()])

    def test_transportErrorTerminates(self) -> None:
        """
        If the transport reports an error, the transaction terminates.
        """
        self.tx.receive(self.bye, 0.0)
        self.assertEqual(self.tx.transport_error(0.1)[-1], Terminated())


class InviteClientTransactionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.invite = request()
        self.tx = ClientTransaction(self.invite, PEER, reliable=False)

    def test_timerARetransmitsDoublingWithoutCap(self) -> None:
        """
        If no response arrives over UDP, Timer A resends the INVITE at T1, 2*T1, 4*T1, ...
        without the T2 cap, and Timer B (64*T1) times it out with a local 408.
        """
        actions = self.tx.start(0.0)
        self.assertEqual(actions, [Send(bytes(self.invite), PEER), StartTimer("A", TIMER_T1),
                                   StartTimer("B", 32.0)])
        delays = []
        for _ in range(6):
            fired = self.tx.on_timer("A", 0.0)
            self.assertEqual(sends(fired), [bytes(self.invite)])
            delays += [a.delay for a in fired if isinstance(a, StartTimer)]
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
        timeout = self.tx.on_timer("B", 32.0)
        self.assertEqual([m.status for m in delivered(timeout)], [408])
        self.assertTrue(timeout[1].local)
        self.assertEqual(timeout[-1], Terminated())

    def test_provisionalStopsRetransmissions(self) -> None:
        """
        If a 180 arrives, Timers A and B stop, the 180 is delivered, and a later Timer A does
        nothing.
        """
        self.tx.start(0.0)
        ringing = response(self.invite, 180)
        self.assertEqual(self.tx.receive(ringing, 0.1),
                         [CancelTimer("A"), CancelTimer("B"), Deliver(ringing)])
        self.assertEqual(self.tx.on_timer("A", 0.5), [])

    def test_failureIsAckedAndResentAck(self) -> None:
        """
        If a 486 arrives, the transaction ACKs it itself (same branch, To with tag, Route kept),
        delivers it, starts Timer D, and answers a retransmitted 486 with the same ACK.
        """
        self.tx.start(0.0)
        busy = response(self.invite, 486)
        actions = self.tx.receive(busy, 0.1)
        ack = parse(sends(actions)[0])
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.cseq), "314159 ACK")
        self.assertEqual(ack.via[0].branch, BRANCH)
        self.assertEqual(ack.to.tag, "a6c85cf")
        self.assertEqual(len(ack.route), 1)
        self.assertEqual(delivered(actions), [busy])
        self.assertIn(StartTimer("D", 32.0), actions)
        self.assertEqual(sends(self.tx.receive(busy, 0.6)), sends(actions))
        self.assertEqual(delivered(self.tx.receive(busy, 0.6)), [])
        self.assertEqual(self.tx.on_timer("D", 32.1), [Terminated()])

    def test_successIsAcceptedForOtherForks(self) -> None:
        """
        If a 200 arrives, it is delivered and the transaction waits for Timer M, passing on
        further 2xx (from other forks) and dropping other responses.
        """
        self.tx.start(0.0)
        ok = response(self.invite, 200)
        actions = self.tx.receive(ok, 0.1)
        self.assertEqual(delivered(actions), [ok])
        self.assertEqual(sends(actions), [])
        self.assertIn(StartTimer("M", 32.0), actions)
        self.assertEqual(delivered(self.tx.receive(ok, 0.2)), [ok])
        self.assertEqual(self.tx.receive(response(self.invite, 486), 0.3), [])
        self.assertEqual(self.tx.on_timer("M", 32.1), [Terminated()])

    def test_reliableTransportSkipsTimerAAndD(self) -> None:
        """
        If the transport is reliable, only Timer B starts, and a failure terminates at once.
        """
        tx = ClientTransaction(self.invite, PEER, reliable=True)
        self.assertEqual(tx.start(0.0), [Send(bytes(self.invite), PEER), StartTimer("B", 32.0)])
        self.assertEqual(tx.receive(response(self.invite, 603), 0.1)[-1], Terminated())

    def test_transportErrorDeliversLocal503(self) -> None:
        """
        If the transport fails before any final response, the TU gets a local 503.
        """
        self.tx.start(0.0)
        actions = self.tx.transport_error(0.0)
        self.assertEqual([m.status for m in delivered(actions)], [503])
        self.assertEqual(actions[-1], Terminated())


class NonInviteClientTransactionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.message = request("MESSAGE")
        self.tx = ClientTransaction(self.message, PEER, reliable=False)

    def test_timerEDoublesUpToT2ThenTimerF(self) -> None:
        """
        If no response arrives over UDP, Timer E resends the request doubling up to T2 and
        Timer F times it out with a local 408.
        """
        self.assertEqual(self.tx.start(0.0), [Send(bytes(self.message), PEER), StartTimer("E", TIMER_T1),
                                              StartTimer("F", 32.0)])
        delays = [a.delay for _ in range(5) for a in self.tx.on_timer("E", 0.0) if isinstance(a, StartTimer)]
        self.assertEqual(delays, [1.0, 2.0, 4.0, 4.0, 4.0])
        self.assertEqual([m.status for m in delivered(self.tx.on_timer("F", 32.0))], [408])

    def test_proceedingRetransmitsEveryT2(self) -> None:
        """
        If a provisional arrives, Timer E continues at T2 intervals.
        """
        self.tx.start(0.0)
        self.tx.receive(response(self.message, 100), 0.1)
        self.assertEqual(self.tx.state, State.PROCEEDING)
        self.assertIn(StartTimer("E", TIMER_T2), self.tx.on_timer("E", 0.5))

    def test_finalStartsTimerKAndAbsorbsRetransmissions(self) -> None:
        """
        If a final response arrives, it is delivered once, Timer K (T4) starts and
        retransmissions of it are absorbed.
        """
        self.tx.start(0.0)
        ok = response(self.message, 200)
        self.assertEqual(self.tx.receive(ok, 0.1),
                         [CancelTimer("E"), CancelTimer("F"), Deliver(ok), StartTimer("K", TIMER_T4)])
        self.assertEqual(self.tx.receive(ok, 0.2), [])
        self.assertEqual(self.tx.on_timer("K", 5.1), [Terminated()])

    def test_reliableNoTimerEAndNoTimerK(self) -> None:
        """
        If the transport is reliable, Timer E never starts and a final terminates at once.
        """
        tx = ClientTransaction(self.message, PEER, reliable=True)
        self.assertEqual(tx.start(0.0), [Send(bytes(self.message), PEER), StartTimer("F", 32.0)])
        self.assertEqual(tx.receive(response(self.message, 200), 0.1)[-1], Terminated())


class KeyTests(SynchronousTestCase):
    def test_cancelFindsItsInvite(self) -> None:
        """
        If a CANCEL carries the INVITE's branch, its INVITE key equals the INVITE's key while
        its own key differs.
        """
        invite, cancel = request(), request("CANCEL")
        self.assertEqual(server_key(cancel, "INVITE"), server_key(invite))
        self.assertNotEqual(server_key(cancel), server_key(invite))

    def test_responseMatchesClientTransaction(self) -> None:
        """
        If a response carries the request's top Via branch and CSeq method, its client key is
        the transaction's key.
        """
        invite = request()
        self.assertEqual(client_key(response(invite, 180)), ClientTransaction(invite, PEER, False).key)

    def test_rfc2543KeyWithoutMagicCookie(self) -> None:
        """
        If the branch lacks the magic cookie, the ACK still matches its INVITE by dialog and CSeq.
        """
        invite = request(branch="old1")
        ack = make_ack(invite, response(invite, 486))
        self.assertEqual(server_key(ack), server_key(invite))
        self.assertEqual(server_key(invite)[0], "2543")

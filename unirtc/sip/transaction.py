# -*- test-case-name: tests.unit.test_sip_transaction -*-
"""RFC 3261 §17 transactions as pure state machines (with RFC 6026's Accepted state).

A transaction never touches a socket or a clock: ``receive``, ``send_response`` and
``on_timer`` return :data:`Action` lists that the caller runs (``Send`` over the transport,
``StartTimer``/``CancelTimer`` on a reactor, ``Deliver`` to the transaction user).  Timer
names are the RFC's letters; ``now`` is passed in so tests drive time explicitly.

RFC 6026 is followed for 2xx to INVITE: the server transaction waits in Accepted for Timer L
(absorbing retransmitted INVITEs instead of forking them again) and the client transaction
waits in Accepted for Timer M (passing further 2xx to the proxy, which forwards them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Union

from unirtc.sip.headers import CSeq, Headers, parse_via
from unirtc.sip.message import SipRequest, SipResponse, make_response

__all__ = [
    "MAGIC_COOKIE",
    "TIMER_T1",
    "TIMER_T2",
    "TIMER_T4",
    "Action",
    "CancelTimer",
    "ClientTransaction",
    "Deliver",
    "Send",
    "ServerTransaction",
    "StartTimer",
    "State",
    "Terminated",
    "client_key",
    "make_ack",
    "server_key",
]

TIMER_T1 = 0.5  # RTT estimate (§17.1.1.1)
TIMER_T2 = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
TIMER_T4 = 5.0  # maximum duration a message will remain in the network
MAGIC_COOKIE = "z9hG4bK"  # §8.1.1.7: branches starting with it are unique per transaction


@dataclass(frozen=True)
class Send:
    """Write ``data`` to ``destination`` (an opaque hop chosen by the transport layer)."""

    data: bytes
    destination: Any


@dataclass(frozen=True)
class StartTimer:
    name: str
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class Deliver:
    """Hand a message to the transaction user; ``local`` marks a response made up here (408, 503)."""

    message: SipRequest | SipResponse
    local: bool = False


@dataclass(frozen=True)
class Terminated:
    """The transaction is over: forget it and cancel its timers."""


Action = Union[Send, StartTimer, CancelTimer, Deliver, Terminated]


class State(enum.IntEnum):
    CALLING = 1
    TRYING = 2
    PROCEEDING = 3
    COMPLETED = 4
    CONFIRMED = 5
    ACCEPTED = 6
    TERMINATED = 7


def _top_via_key(headers: Headers) -> tuple[str, str] | None:
    """(branch, sent-by) of the top Via when the branch is RFC 3261-style, else None."""
    value = headers.get_list("Via")
    if not value:
        return None
    via = parse_via(value[0])
    if via.branch is None or not via.branch.startswith(MAGIC_COOKIE):
        return None
    return via.branch, via.sent_by.lower()


def server_key(request: SipRequest, method: str | None = None) -> tuple[str, ...]:
    """The §17.2.3 key matching a request to its server transaction.

    An ACK matches its INVITE's transaction; ``server_key(cancel, "INVITE")`` finds the
    INVITE transaction a CANCEL is about.
    """
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    key = _top_via_key(request.headers)
    if key is not None:
        return (*key, method)
    # RFC 2543 peers: no magic cookie, so match on the dialog and CSeq (§17.2.3, simplified:
    # the To tag is left out because the ACK to a non-2xx carries the tag the response added).
    via = request.via[0]
    return ("2543", str(request.uri), request.from_.tag or "", request.call_id,
            str(request.cseq.number), via.sent_by.lower(), method)


def client_key(message: SipRequest | SipResponse) -> tuple[str, str]:
    """§17.1.3: the top Via branch and the CSeq method match a response to its request."""
    return str(message.via[0].branch), message.cseq.method


def make_ack(request: SipRequest, response: SipResponse) -> SipRequest:
    """§17.1.1.3: the ACK a client transaction sends itself for a non-2xx final response."""
    headers = Headers()
    headers.add("Via", request.headers.get_list("Via")[0])
    for name in ("Route", "Max-Forwards"):
        for value in request.headers.get_all(name):
            headers.add(name, value)
    headers.add("From", request.headers.get("From") or "")
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", str(CSeq(request.cseq.number, "ACK")))
    return SipRequest("ACK", request.uri, headers=headers)


class ServerTransaction:
    """INVITE (§17.2.1) and non-INVITE (§17.2.2) server transactions.

    Build it with the first request and the hop responses go to (§18.2.2, chosen by the
    transport), then call ``receive(request, now)``: it delivers the request to the TU once
    and absorbs or answers retransmissions afterwards.
    """

    def __init__(self, request: SipRequest, reply_to: Any, reliable: bool) -> None:
        self.request = request
        self.reply_to = reply_to
        self.reliable = reliable
        self.invite = request.method == "INVITE"
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last_response: SipResponse | None = None
        self._last_bytes = b""
        self._delivered = False
        self._interval_g = TIMER_T1

    @property
    def key(self) -> tuple[str, ...]:
        return server_key(self.request)

    def receive(self, request: SipRequest, now: float) -> list[Action]:
        """The first request, a retransmission of it, or (INVITE only) the ACK to a non-2xx."""
        if not self._delivered:
            self._delivered = True
            actions: list[Action] = []
            if self.invite:
                # §17.2.1: answer 100 at once, so the client stops retransmitting.
                actions += self.send_response(make_response(request, 100), now)
            return [*actions, Deliver(request)]
        if request.method == "ACK":
            return self._ack(request)
        if self.state in (State.PROCEEDING, State.COMPLETED) and self._last_bytes:
            return [Send(self._last_bytes, self.reply_to)]
        return []  # Trying, Confirmed, Accepted: absorbed

    def _ack(self, request: SipRequest) -> list[Action]:
        if self.state == State.ACCEPTED:
            return [Deliver(request)]  # RFC 6026 §8.2: an ACK to the 2xx goes to the TU
        if not self.invite or self.state != State.COMPLETED:
            return []  # ACKs in Confirmed are absorbed (§17.2.1)
        self.state = State.CONFIRMED
        actions: list[Action] = [CancelTimer("G"), CancelTimer("H")]
        if self.reliable:
            return self._terminate(actions)
        return [*actions, StartTimer("I", TIMER_T4)]

    def send_response(self, response: SipResponse, now: float) -> list[Action]:
        """A response from the TU; ignored once a final response has been sent (except 2xx
        to INVITE in Accepted, which the TU may send again)."""
        status = response.status
        if self.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            return []
        if self.state == State.ACCEPTED:
            return [Send(bytes(response), self.reply_to)] if 200 <= status < 300 else []
        self.last_response = response
        self._last_bytes = bytes(response)
        actions: list[Action] = [Send(self._last_bytes, self.reply_to)]
        if status < 200:
            if self.state == State.TRYING:
                self.state = State.PROCEEDING
            return actions
        if self.invite and status < 300:
            self.state = State.ACCEPTED  # RFC 6026 §7.1
            return [*actions, StartTimer("L", 64 * TIMER_T1)]
        self.state = State.COMPLETED
        if self.invite:
            if not self.reliable:
                actions.append(StartTimer("G", self._interval_g))
            return [*actions, StartTimer("H", 64 * TIMER_T1)]
        if self.reliable:
            return self._terminate(actions)  # Timer J is zero on reliable transports
        return [*actions, StartTimer("J", 64 * TIMER_T1)]

    def on_timer(self, name: str, now: float) -> list[Action]:
        if self.state == State.TERMINATED:
            return []
        if name == "G" and self.state == State.COMPLETED:
            # §17.2.1: resend the final response, doubling the interval up to T2.
            self._interval_g = min(2 * self._interval_g, TIMER_T2)
            return [Send(self._last_bytes, self.reply_to), StartTimer("G", self._interval_g)]
        if name == "H" and self.state == State.COMPLETED:
            return self._terminate([CancelTimer("G")])  # no ACK ever came
        if (name, self.state) in (("I", State.CONFIRMED), ("J", State.COMPLETED),
                                  ("L", State.ACCEPTED)):
            return self._terminate([])
        return []

    def transport_error(self, now: float) -> list[Action]:
        """§17.2.4: the response could not be sent; the transaction ends."""
        return self._terminate([CancelTimer(name) for name in "GHIJL"])

    def _terminate(self, actions: list[Action]) -> list[Action]:
        self.state = State.TERMINATED
        return [*actions, Terminated()]


class ClientTransaction:
    """INVITE (§17.1.1) and non-INVITE (§17.1.2) client transactions.

    ``start(now)`` sends the request.  Responses go in through ``receive``; the TU sees each
    one it should (the first final response, provisionals, and 2xx to INVITE in Accepted).
    A timeout (Timer B or F) delivers a local 408, a transport error a local 503 (§8.1.3.1).
    """

    def __init__(self, request: SipRequest, destination: Any, reliable: bool) -> None:
        self.request = request
        self.destination = destination
        self.reliable = reliable
        self.invite = request.method == "INVITE"
        self.state = State.CALLING if self.invite else State.TRYING
        self.ack: SipRequest | None = None
        self._bytes = bytes(request)
        self._interval = TIMER_T1

    @property
    def key(self) -> tuple[str, str]:
        return client_key(self.request)

    def start(self, now: float) -> list[Action]:
        actions: list[Action] = [Send(self._bytes, self.destination)]
        if not self.reliable:
            actions.append(StartTimer("A" if self.invite else "E", TIMER_T1))
        return [*actions, StartTimer("B" if self.invite else "F", 64 * TIMER_T1)]

    def receive(self, response: SipResponse, now: float) -> list[Action]:
        if self.invite:
            return self._receive_invite(response)
        return self._receive_non_invite(response)

    def _receive_invite(self, response: SipResponse) -> list[Action]:
        status, state = response.status, self.state
        if state in (State.CALLING, State.PROCEEDING):
            stop: list[Action] = [CancelTimer("A"), CancelTimer("B")]
            if status < 200:
                self.state = State.PROCEEDING
                return [*stop, Deliver(response)]
            if status < 300:
                self.state = State.ACCEPTED  # RFC 6026 §8.4: the TU ACKs 2xx itself
                return [*stop, Deliver(response), StartTimer("M", 64 * TIMER_T1)]
            self.state = State.COMPLETED
            self.ack = make_ack(self.request, response)
            actions = [*stop, Send(bytes(self.ack), self.destination), Deliver(response)]
            if self.reliable:
                return self._terminate(actions)  # Timer D is zero on reliable transports
            return [*actions, StartTimer("D", 32.0)]
        if state == State.COMPLETED and status >= 300 and self.ack is not None:
            return [Send(bytes(self.ack), self.destination)]  # the response was retransmitted
        if state == State.ACCEPTED and 200 <= status < 300:
            return [Deliver(response)]  # further 2xx from other forks: the proxy forwards them
        return []

    def _receive_non_invite(self, response: SipResponse) -> list[Action]:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return []  # Completed absorbs retransmitted finals
        if response.status < 200:
            self.state = State.PROCEEDING
            return [Deliver(response)]
        self.state = State.COMPLETED
        actions: list[Action] = [CancelTimer("E"), CancelTimer("F"), Deliver(response)]
        if self.reliable:
            return self._terminate(actions)
        return [*actions, StartTimer("K", TIMER_T4)]

    def on_timer(self, name: str, now: float) -> list[Action]:
        state = self.state
        if name == "A" and state == State.CALLING:
            self._interval *= 2  # §17.1.1.2: Timer A doubles without a cap
            return [Send(self._bytes, self.destination), StartTimer("A", self._interval)]
        if name == "E" and state in (State.TRYING, State.PROCEEDING):
            # §17.1.2.2: doubling up to T2 while Trying, every T2 once Proceeding.
            self._interval = min(2 * self._interval, TIMER_T2) if state == State.TRYING else TIMER_T2
            return [Send(self._bytes, self.destination), StartTimer("E", self._interval)]
        if (name == "B" and state == State.CALLING) or (
            name == "F" and state in (State.TRYING, State.PROCEEDING)
        ):
            timeout = make_response(self.request, 408)
            return self._terminate([CancelTimer("A" if self.invite else "E"),
                                    Deliver(timeout, local=True)])
        if (name, state) in (("D", State.COMPLETED), ("K", State.COMPLETED), ("M", State.ACCEPTED)):
            return self._terminate([])
        return []

    def transport_error(self, now: float) -> list[Action]:
        """§17.1.4: the request could not be sent; the TU gets a 503 unless a final came already."""
        if self.state in (State.COMPLETED, State.ACCEPTED, State.TERMINATED):
            return self._terminate([]) if self.state != State.TERMINATED else []
        failure = make_response(self.request, 503)
        return self._terminate([*(CancelTimer(name) for name in "ABEF"), Deliver(failure, local=True)])

    def _terminate(self, actions: list[Action]) -> list[Action]:
        self.state = State.TERMINATED
        return [*actions, Terminated()]

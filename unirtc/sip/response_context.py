# -*- test-case-name: tests.protocol.test_sip_proxy -*-
"""The proxy's response context (RFC 3261 §16.7): branches of one forwarded request, the
responses they gather, the best one chosen, and CANCEL of the rest (§16.10).

The proxy (``proxy.py``) decides *where* a request goes; this module decides what the caller
hears back.  It never touches a socket: branches are sent and answered through the proxy's
transaction stack, and Timer C runs on the proxy's injected clock.  A branch may carry
alternate hops (RFC 3263 §4.3: the next server of an SRV set): when it fails with a 503 or
times out before any provisional, the same request is tried at the next hop.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

from unirtc.sip.headers import CSeq, Headers
from unirtc.sip.message import SipRequest, SipResponse, make_response
from unirtc.sip.transaction import ClientTransaction, ServerTransaction, State
from unirtc.sip.transport import Hop

TIMER_C = 180.0  # §16.6 step 11: more than 3 minutes without a provisional ends an INVITE branch
_PREFERRED_4XX = (401, 407, 415, 420, 484)  # §16.7 step 6: they tell the client how to retry
_FAILOVER = (408, 503)  # RFC 3263 §4.3: a timeout, a transport error or a 503 tries the next server


class Stack(Protocol):
    """What the proxy needs from the transaction layer (``unirtc.sip.service.SipCore``)."""

    def respond(self, tx: ServerTransaction, response: SipResponse) -> None: ...

    def request(self, request: SipRequest, hop: Hop,
                on_response: Callable[[SipResponse], None]) -> ClientTransaction: ...


class Forwarder(Protocol):
    """The proxy as the response context sees it."""

    stack: Stack
    clock: Any

    def forward_response(self, response: SipResponse) -> None: ...


def new_tag() -> str:
    return secrets.token_hex(8)


def make_cancel(request: SipRequest) -> SipRequest:
    """§9.1: the CANCEL for a request we sent (same Request-URI, top Via, Route, tags, CSeq)."""
    headers = Headers()
    headers.add("Via", request.headers.get_list("Via")[0])
    for value in request.headers.get_all("Route"):
        headers.add("Route", value)
    headers.add("Max-Forwards", "70")
    for name in ("From", "To", "Call-ID"):
        headers.add(name, request.headers.get(name) or "")
    headers.add("CSeq", str(CSeq(request.cseq.number, "CANCEL")))
    return SipRequest("CANCEL", request.uri, headers=headers)


def best_response(responses: list[SipResponse]) -> SipResponse | None:
    """§16.7 step 6: a 6xx if any, else the lowest class, preferring retry hints in 4xx.

    401 and 407 challenges from every branch are merged into the chosen one (step 7), and a
    503 becomes 500 so the client does not think *we* are overloaded.
    """
    if not responses:
        return None
    finals = [r for r in responses if r.status >= 300]
    global_failures = [r for r in finals if r.status >= 600]
    if global_failures:
        chosen = global_failures[0]
    else:
        lowest = min(r.status // 100 for r in finals)
        in_class = [r for r in finals if r.status // 100 == lowest]
        chosen = next((r for r in in_class if r.status in _PREFERRED_4XX), in_class[0])
    if chosen.status in (401, 407):
        merged = SipResponse(chosen.status, chosen.reason, headers=chosen.headers.copy(), body=chosen.body)
        for other in finals:
            if other is not chosen and other.status in (401, 407):
                for name in ("WWW-Authenticate", "Proxy-Authenticate"):
                    for value in other.headers.get_all(name):
                        merged.headers.add(name, value)
        chosen = merged
    if chosen.status == 503:
        chosen = SipResponse(500, "Server Internal Error", headers=chosen.headers.copy(), body=chosen.body)
    return chosen


class Branch:
    """One forwarded copy of the request.

    ``alternates`` are the hops left to try if this one cannot be reached (RFC 3263 §4.3),
    and ``make_next(hop, rest)`` builds the branch for the next of them (a new Via branch,
    and a Record-Route for that hop's transport).
    """

    def __init__(self, request: SipRequest, hop: Hop, alternates: tuple[Hop, ...] = (),
                 make_next: Callable[[Hop, tuple[Hop, ...]], Branch] | None = None) -> None:
        self.request = request
        self.hop = hop
        self.alternates = alternates
        self.make_next = make_next
        self.tx: ClientTransaction | None = None
        self.provisional = False
        self.final: SipResponse | None = None
        self.cancel_pending = False
        self.timer_c: Any = None


class ResponseContext:
    """One forwarded request: its branches, the responses gathered, the choice of §16.7."""

    def __init__(self, proxy: Forwarder, tx: ServerTransaction, request: SipRequest) -> None:
        self.proxy = proxy
        self.tx = tx
        self.request = request
        self.branches: list[Branch] = []
        self.cancelled = False
        self.answered = False

    def fork(self, branch: Branch) -> None:
        self.branches.append(branch)
        stack = self.proxy.stack
        branch.tx = stack.request(branch.request, branch.hop, lambda r: self.on_response(branch, r))
        if self.request.method == "INVITE" and branch.final is None:
            self._restart_timer_c(branch)

    def on_response(self, branch: Branch, response: SipResponse) -> None:
        response.headers.pop_first("Via")  # our own (§16.7 step 3)
        status = response.status
        if status < 200:
            if status == 100:
                return
            branch.provisional = True
            if self.request.method == "INVITE":
                self._restart_timer_c(branch)
            if branch.cancel_pending:
                self._send_cancel(branch)
            if not self.answered and not self.cancelled:
                self.proxy.stack.respond(self.tx, response)
            return
        self._stop_timer_c(branch)
        if 200 <= status < 300:
            if branch.final is None:
                branch.final = response
            self._forward_success(response)
            if self.request.method == "INVITE":
                self.cancel_branches()
            return
        if branch.final is None and self._fail_over(branch, status):
            return
        if branch.final is None:
            branch.final = response
        if status >= 600 and self.request.method == "INVITE":
            self.cancel_branches()
        self.check_done()

    def _fail_over(self, branch: Branch, status: int) -> bool:
        """RFC 3263 §4.3: replace a branch that failed to reach its server by the next hop."""
        if status not in _FAILOVER or not branch.alternates or branch.make_next is None \
                or branch.provisional or branch.cancel_pending or self.cancelled or self.answered:
            return False
        attempt = branch.make_next(branch.alternates[0], branch.alternates[1:])
        self.branches.remove(branch)
        self.fork(attempt)
        return True

    def _forward_success(self, response: SipResponse) -> None:
        """§16.7 step 5: every 2xx to INVITE goes upstream, even after another final."""
        if self.tx.state in (State.PROCEEDING, State.TRYING, State.ACCEPTED):
            self.answered = True
            self.proxy.stack.respond(self.tx, response)
        elif self.request.method == "INVITE" and response.headers.get("Via"):
            self.proxy.forward_response(response)

    def check_done(self) -> None:
        if self.answered or any(b.final is None for b in self.branches):
            return
        self.answered = True
        best = best_response([b.final for b in self.branches if b.final is not None])
        if best is None or (self.cancelled and best.status < 300):
            best = make_response(self.request, 487 if self.cancelled else 408, to_tag=new_tag())
        self.proxy.stack.respond(self.tx, best)

    def cancel_branches(self) -> None:
        """§16.10 / §16.7 step 10: CANCEL each pending branch; one without a provisional yet
        counts as answered 487 at once and is CANCELled if a provisional still arrives."""
        for branch in self.branches:
            if branch.final is not None or branch.cancel_pending:
                continue
            branch.cancel_pending = True
            if branch.provisional:
                self._send_cancel(branch)
            else:
                self._stop_timer_c(branch)
                branch.final = make_response(self.request, 487, to_tag=new_tag())
        self.check_done()

    def _send_cancel(self, branch: Branch) -> None:
        if branch.request.method != "INVITE":
            return
        cancel = make_cancel(branch.request)
        self.proxy.stack.request(cancel, branch.hop, lambda response: None)

    def _restart_timer_c(self, branch: Branch) -> None:
        self._stop_timer_c(branch)
        branch.timer_c = self.proxy.clock.callLater(TIMER_C, self._timer_c, branch)

    def _stop_timer_c(self, branch: Branch) -> None:
        if branch.timer_c is not None and branch.timer_c.active():
            branch.timer_c.cancel()
        branch.timer_c = None

    def _timer_c(self, branch: Branch) -> None:
        """§16.8: CANCEL a branch that rang for too long; one that never rang counts as 408."""
        branch.timer_c = None
        if branch.final is not None:
            return
        if branch.provisional:
            branch.cancel_pending = True
            self._send_cancel(branch)
        else:
            branch.final = make_response(self.request, 408, to_tag=new_tag())
            self.check_done()

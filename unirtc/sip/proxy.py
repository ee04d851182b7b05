# -*- test-case-name: tests.protocol.test_sip_proxy -*-
"""The transaction-stateful proxy (RFC 3261 §16) in front of the location service.

A request for a local AOR (any served SIP domain, or one of our addresses) is authenticated
when it comes from a local user (407, RFC 3261 §22.3), checked against the directory (404)
and forked in parallel to every binding (480 when there is none).  In-dialog requests follow
their Route headers; we Record-Route every dialog we forward, with the flow tokens of the
TCP/TLS connections on both sides in the URI's user part, so later requests reuse those
connections (RFC 5626 §5.3).  What the caller hears back (§16.7 response selection, §16.10
CANCEL of the other branches) lives in ``response_context.py``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed

from unirtc.logging import get_logger
from unirtc.sip import response_context
from unirtc.sip.digest import DigestParseError, parse_credentials
from unirtc.sip.headers import Via
from unirtc.sip.message import SipRequest, SipResponse, make_response
from unirtc.sip.response_context import TIMER_C, Branch, ResponseContext, best_response, make_cancel
from unirtc.sip.response_context import new_tag as _tag
from unirtc.sip.transaction import MAGIC_COOKIE, ServerTransaction, State
from unirtc.sip.transport import Hop, Transports, uri_hop, via_hop
from unirtc.sip.uri import SipParseError, SipURI, parse_name_addr, parse_uri
from unirtc.xmpp.jid import InvalidJID, normalize_localpart

__all__ = ["ALLOW", "TIMER_C", "Locator", "Proxy", "Stack", "best_response", "loop_hash", "make_cancel"]

log = get_logger("unirtc.sip.proxy")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER, REGISTER"
MAX_OUTBOUND_HOPS = 8  # servers of a foreign domain tried in turn (RFC 3263 §4.3)

Locator = Callable[[SipURI], "Deferred[list[Hop]]"]


class Stack(response_context.Stack, Protocol):
    """What the proxy needs from the transaction layer (``unirtc.sip.service.SipCore``)."""

    transports: Transports


def loop_hash(request: SipRequest) -> str:
    """§16.6 step 8: a hash of what a looping request keeps unchanged, for our Via branch."""
    parts = [str(request.uri), request.from_.tag or "", request.to.tag or "", request.call_id,
             str(request.cseq.number), *request.headers.get_all("Route"),
             *request.headers.get_all("Proxy-Require")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class Proxy:
    """Routes every request that is not a REGISTER; see the module docstring.

    :param stack: the transaction layer (sends, client transactions, responses)
    :param realm_for: SIP domain -> account domain (``digest.domain_map``), None if foreign
    :param account_domain: the account domain that our own addresses stand for
    :param accounts: ``credentials(localpart, domain) -> Deferred[Credentials | None]``
    :param bindings: ``lookup(aor, now) -> list[Binding]``
    :param authenticator: ``verify(request, proxy=True, source=...)`` and ``respond(...)``
    :param locator: ``locator(uri) -> Deferred[list[Hop]]`` (``locate.SipLocator``) to relay
        local users' requests to foreign domains (``[sip] outbound``); None refuses them 403
    """

    def __init__(self, stack: Stack, clock: Any, realm_for: Callable[[str], str | None],
                 account_domain: str, accounts: Any, bindings: Any, authenticator: Any,
                 locator: Locator | None = None) -> None:
        self.stack = stack
        self.clock = clock
        self.realm_for = realm_for
        self.account_domain = account_domain
        self.accounts = accounts
        self.bindings = bindings
        self.authenticator = authenticator
        self.locator = locator
        self.contexts: dict[int, ResponseContext] = {}

    # helpers ------------------------------------------------------------------------------

    def _reply(self, tx: ServerTransaction, request: SipRequest, status: int, reason: str | None = None,
               **headers: str) -> None:
        response = make_response(request, status, reason, to_tag=_tag())
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        self.stack.respond(tx, response)

    def local_domain(self, uri: Any) -> str | None:
        """The account domain a URI's host stands for, or None when it is not ours."""
        if not isinstance(uri, SipURI) or uri.scheme == "tel":
            return None
        if self.realm_for(uri.host) is not None:
            return self.realm_for(uri.host)
        return self.account_domain if self.stack.transports.is_local(uri.host, uri.port) else None

    def _is_me(self, uri: Any) -> bool:
        return isinstance(uri, SipURI) and uri.scheme != "tel" and (
            self.stack.transports.is_local(uri.host, uri.port)
            or (uri.port is None and self.realm_for(uri.host) is not None))

    # requests ------------------------------------------------------------------------------

    def handle(self, request: SipRequest, tx: ServerTransaction, source: Hop) -> None:
        """A new request (not REGISTER, CANCEL or ACK) in its server transaction."""
        if request.method == "OPTIONS" and request.uri.user is None and self._is_me(request.uri) \
                and not request.route:
            self._reply(tx, request, 200, Allow=ALLOW, Accept="application/sdp", Supported="path, outbound")
            return
        if request.max_forwards == 0:
            self._reply(tx, request, 483)
            return
        if "Proxy-Require" in request.headers:
            self._reply(tx, request, 420, Unsupported=", ".join(request.headers.get_list("Proxy-Require")))
            return
        if self._looped(request):
            self._reply(tx, request, 482)
            return
        loop = loop_hash(request)
        tokens = self._preprocess_routes(request)
        if request.to.tag is not None:  # in-dialog: only along a route we recorded
            if tokens is None:
                self._reply(tx, request, 404, "Not Here")
                return
            self._forward(tx, request, source, [(None, self._next_hop(request, source, tokens))], loop)
            return
        target_domain = None if request.route else self.local_domain(request.uri)
        if target_domain is not None and request.uri.user is None:
            if request.method == "OPTIONS":
                self._reply(tx, request, 200, Allow=ALLOW)
            else:
                self._reply(tx, request, 484)
            return
        needs_auth = self.realm_for(request.from_.uri.host) is not None \
            if isinstance(request.from_.uri, SipURI) else False
        if not needs_auth and target_domain is None:
            self._reply(tx, request, 403, "Forbidden (relaying denied)")
            return
        checked = self._authenticate(request, tx, source) if needs_auth else succeed(True)
        checked.addCallback(self._authenticated, request, tx, source, target_domain, loop)
        checked.addErrback(self._failed, request, tx)

    def _failed(self, failure: Any, request: SipRequest, tx: ServerTransaction) -> None:
        log.failure("SIP proxy: routing {method} failed", failure, method=request.method)
        self._reply(tx, request, 500)

    def _looped(self, request: SipRequest) -> bool:
        """§16.3 step 4: one of our Vias carries the hash this request would get again."""
        prefix = f"{MAGIC_COOKIE}{loop_hash(request)}."
        transports = self.stack.transports
        return any(via.branch is not None and via.branch.startswith(prefix)
                   and transports.is_local(via.host, via.port) for via in request.via)

    def _preprocess_routes(self, request: SipRequest) -> list[str] | None:
        """§16.4: undo a strict router's rewrite and pop our own Route entries.

        Returns the flow tokens found in the popped Routes (an empty list when the Route
        entries were ours without tokens), or None when no Route was ours.
        """
        if self._is_me(request.uri) and request.uri.lr and request.route:
            last = request.headers.get_list("Route")[-1]
            values = request.headers.get_list("Route")[:-1]
            request.headers.remove("Route")
            for value in values:
                request.headers.add("Route", value)
            request.uri = parse_name_addr(last).uri
        tokens: list[str] | None = None
        while request.route and self._is_me(request.route[0].uri):
            popped = request.route[0].uri
            request.headers.pop_first("Route")
            tokens = tokens or []
            if isinstance(popped, SipURI) and popped.user:
                tokens += popped.user.split("~")
        return tokens

    def _next_hop(self, request: SipRequest, source: Hop, tokens: list[str]) -> Hop | None:
        """Where a routed request goes: the top Route, else the Request-URI; over the flow
        named in our Record-Route that the request did not come in on, when still open."""
        flows = self.stack.transports.flows
        for token in tokens:
            if token != source.flow and token in flows:
                peer = flows[token]
                return Hop(peer.transport_name, *peer.peer, flow=token)
        target = request.route[0].uri if request.route else request.uri
        return uri_hop(target) if isinstance(target, SipURI) else None

    def _authenticate(self, request: SipRequest, tx: ServerTransaction, source: Hop) -> Deferred[bool]:
        """§22.3: a local user's request carries Proxy-Authorization for their own From."""

        def decide(result: Any) -> bool:
            if result.account is None:
                self.stack.respond(tx, self.authenticator.respond(request, result, proxy=True))
                return False
            user = request.from_.uri.user or ""
            try:
                same = (normalize_localpart(user), self.realm_for(request.from_.uri.host)) == result.account
            except InvalidJID:
                same = False
            if not same:
                self._reply(tx, request, 403, "Forbidden (From is not the authenticated user)")
                return False
            _consume_credentials(request, result.account[1])
            return True

        return self.authenticator.verify(request, proxy=True, source=source.address).addCallback(decide)

    def _authenticated(self, ok: bool, request: SipRequest, tx: ServerTransaction, source: Hop,
                       target_domain: str | None, loop: str) -> Deferred[None] | None:
        if not ok:
            return None
        if target_domain is None:
            if self.locator is None:
                self._reply(tx, request, 403, "Forbidden (relaying denied)")
                return None
            return self._outbound(tx, request, source, loop)
        try:
            localpart = normalize_localpart(request.uri.user or "")
        except InvalidJID:
            self._reply(tx, request, 404)
            return None
        aor = (localpart, target_domain)

        def found(credentials: Any) -> None:
            if credentials is None or credentials.disabled:
                self._reply(tx, request, 404)
                return
            if tx.state not in (State.TRYING, State.PROCEEDING):
                return  # cancelled (487 sent) while we were looking
            targets = []
            for binding in self.bindings.lookup(aor, self.clock.seconds()):
                target = _contact_uri(binding.contact)
                if target is not None:
                    targets.append((target, self._binding_hop(binding, target)))
            if not targets:
                self._reply(tx, request, 480)
                return
            self._forward(tx, request, source, targets, loop)

        return self.accounts.credentials(*aor).addCallback(found)

    def _outbound(self, tx: ServerTransaction, request: SipRequest, source: Hop,
                  loop: str) -> Deferred[None]:
        """An authenticated local user's request for a foreign domain: to the servers that
        RFC 3263 finds for the top Route or the Request-URI, the next one if one fails."""
        destination = request.route[0].uri if request.route else request.uri
        if not isinstance(destination, SipURI) or destination.scheme == "tel":
            self._reply(tx, request, 416)
            return succeed(None)

        def located(hops: list[Hop]) -> None:
            if tx.state not in (State.TRYING, State.PROCEEDING):
                return  # cancelled (487 sent) while DNS answered
            if not hops:
                self._reply(tx, request, 404, "Not Found (no SIP server for that domain)")
                return
            first, *rest = hops[:MAX_OUTBOUND_HOPS]
            self._forward(tx, request, source, [(None, first)], loop, tuple(rest))

        def unresolvable(failure: Any) -> None:
            log.info("SIP outbound: cannot locate {uri}: {error}", uri=str(destination),
                     error=failure.getErrorMessage())
            located([])

        return self.locator(destination).addCallbacks(located, unresolvable)

    def _binding_hop(self, binding: Any, target: SipURI) -> Hop | None:
        flows = self.stack.transports.flows
        if binding.flow is not None and binding.flow in flows:
            peer = flows[binding.flow]
            return Hop(peer.transport_name, *peer.peer, flow=binding.flow)
        if (target.transport or "").upper() in ("WS", "WSS"):
            return None  # a browser whose WebSocket has gone (RFC 7118 §5): no other way there
        hop = uri_hop(target)
        source = binding.source
        if source is not None and (hop is None or (hop.transport == "UDP" and hop.host != source[0])):
            # NAT: the contact is unreachable or private; answer where the REGISTER came from.
            return Hop("UDP", source[0], int(source[1]))
        return hop

    def _forward(self, tx: ServerTransaction, request: SipRequest, source: Hop,
                 targets: list[tuple[SipURI | None, Hop | None]], loop: str,
                 alternates: tuple[Hop, ...] = ()) -> None:
        """§16.6: one branch per target, all in parallel; ``alternates`` are further hops
        for a single target, tried in turn when one cannot be reached (RFC 3263 §4.3)."""
        context = ResponseContext(self, tx, request)
        self.contexts[id(tx)] = context
        record_route = request.to.tag is None and request.method not in ("REGISTER",)
        for target, hop in targets:
            if hop is None:
                branch = Branch(request, Hop("UDP", "", 0))
                branch.final = make_response(request, 480, "Temporarily Unavailable (unreachable contact)",
                                             to_tag=_tag())
                context.branches.append(branch)
                continue
            context.fork(self._attempt(request, target, source, loop, record_route, hop, alternates))
        context.check_done()

    def _attempt(self, request: SipRequest, target: SipURI | None, source: Hop, loop: str,
                 record_route: bool, hop: Hop, alternates: tuple[Hop, ...]) -> Branch:
        """A branch to ``hop`` that knows how to make its successor at the next alternate."""
        copy, chosen = self._branch_request(request, target, source, hop, loop, record_route)
        successor = partial(self._attempt, request, target, source, loop, record_route)
        return Branch(copy, chosen, alternates, successor)

    def _branch_request(self, request: SipRequest, target: SipURI | None, source: Hop, hop: Hop,
                        loop: str, record_route: bool) -> tuple[SipRequest, Hop]:
        copy = SipRequest(request.method, target or request.uri, headers=request.headers.copy(),
                          body=request.body)
        forwards = request.max_forwards
        copy.headers.set("Max-Forwards", str(70 if forwards is None else forwards - 1))
        transports = self.stack.transports
        hop = transports.choose(hop, len(bytes(copy)) + 300)
        if record_route:
            tokens = "~".join(t for t in (source.flow, hop.flow) if t)
            sides = [(hop.transport, ":" in hop.host), (source.transport, ":" in source.host)]
            entries = list(dict.fromkeys(_rr_uri(*transports.local_address(t, v6), t, tokens)
                                         for t, v6 in sides))
            for entry in reversed(entries):
                copy.headers.add("Record-Route", f"<{entry}>", first=True)
        host, port = transports.local_address(hop.transport, ":" in hop.host)
        branch = f"{MAGIC_COOKIE}{loop}.{secrets.token_hex(6)}"
        copy.headers.add("Via", str(Via(hop.transport, host, port, {"branch": branch, "rport": None})),
                         first=True)
        return copy, hop

    # CANCEL, ACK and stray responses ---------------------------------------------------------

    def cancel(self, request: SipRequest, tx: ServerTransaction, invite: ServerTransaction | None) -> None:
        """§16.10: answer the CANCEL, then cancel the matching INVITE's pending branches."""
        if invite is None or invite.state not in (State.PROCEEDING, State.TRYING):
            self._reply(tx, request, 481 if invite is None else 200)
            return
        self._reply(tx, request, 200)
        context = self.contexts.get(id(invite))
        if context is None:  # still authenticating or looking up: nothing forked yet
            self.stack.respond(invite, make_response(invite.request, 487, to_tag=_tag()))
            return
        context.cancelled = True
        context.cancel_branches()

    def ack(self, request: SipRequest, source: Hop) -> None:
        """An ACK outside any transaction (for a 2xx): forwarded statelessly along its route."""
        if request.max_forwards == 0:
            return
        tokens = self._preprocess_routes(request)
        if tokens is None:
            return  # not routed through us: we are no relay for strangers' ACKs
        hop = self._next_hop(request, source, tokens)
        if hop is None:
            return
        transports = self.stack.transports
        hop = transports.choose(hop, len(bytes(request)) + 200)
        forwards = request.max_forwards
        request.headers.set("Max-Forwards", str(70 if forwards is None else forwards - 1))
        # §16.11: a stateless branch must be the same for retransmissions of the same ACK.
        seed = f"{request.via[0].branch}|{loop_hash(request)}".encode()
        branch = f"{MAGIC_COOKIE}{hashlib.sha256(seed).hexdigest()[:20]}"
        host, port = transports.local_address(hop.transport, ":" in hop.host)
        request.headers.add("Via", str(Via(hop.transport, host, port, {"branch": branch})), first=True)
        transports.send(bytes(request), hop)

    def forward_response(self, response: SipResponse) -> None:
        """§16.7/§18.2.2: a response with our Via popped, sent on to the next Via statelessly."""
        vias = response.via
        if not vias:
            return
        hop = via_hop(vias[0])
        self.stack.transports.send(bytes(response), self.stack.transports.choose(hop, 0))

    def stray_response(self, response: SipResponse) -> None:
        """A response matching no client transaction (a 2xx retransmission): if the top Via
        is ours, pass it on statelessly; otherwise drop it (§18.1.2)."""
        top = response.via[0]
        if not self.stack.transports.is_local(top.host, top.port):
            return
        response.headers.pop_first("Via")
        self.forward_response(response)

    def forget(self, tx: ServerTransaction) -> None:
        """The server transaction ended: drop its response context."""
        self.contexts.pop(id(tx), None)


def _contact_uri(contact: str) -> SipURI | None:
    try:
        uri = parse_uri(contact.strip("<>"))
    except SipParseError:
        return None
    return uri if isinstance(uri, SipURI) and uri.scheme != "tel" else None


def _rr_uri(host: str, port: int, transport: str, tokens: str) -> str:
    user = f"{tokens}@" if tokens else ""
    return f"sip:{user}{host}:{port};transport={transport.lower()};lr"


def _consume_credentials(request: SipRequest, realm: str) -> None:
    """Remove the Proxy-Authorization we checked; others are for proxies further on (§22.3)."""
    kept = []
    for value in request.headers.get_all("Proxy-Authorization"):
        try:
            if parse_credentials(value).get("realm") == realm:
                continue
        except DigestParseError:
            pass
        kept.append(value)
    request.headers.remove("Proxy-Authorization")
    for value in kept:
        request.headers.add("Proxy-Authorization", value)

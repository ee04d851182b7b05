# -*- test-case-name: tests.protocol.test_s2s -*-
"""Incoming federation streams: another server sends us its users' stanzas (RFC 6120 §4-§6).

The peer opens a stream to one of our domains, upgrades it with STARTTLS (required unless
``[s2s] require_encryption = no``), then proves which domain it speaks for:

- SASL EXTERNAL (RFC 6120 §6, XEP-0178), offered only when its certificate is valid for the
  domain in its stream header;
- Server Dialback (XEP-0220) when ``[s2s] dialback`` allows it: we ask the claimed domain's
  server whether the key is its own (``Federation.links.verify``), or accept at once when
  the certificate on this stream is valid for that domain (the XEP-0344 shortcut). A stream
  may carry several authenticated domains this way (piggybacking).

We also answer ``<db:verify/>`` requests on any stream: that is how another server checks a
key we sent it. Stanzas need ``to`` and ``from`` (RFC 6120 §8.1.1.1, §8.1.2.1); ``from``
must be an authenticated domain (else ``invalid-from``), ``to`` one we serve (else
``host-unknown``). They then go through the router like any local stanza, so they reach
users, rooms and components alike.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.xmpp import dialback
from unirtc.xmpp.dialback import NS_DIALBACK, Dialback, DialbackError, keys_match
from unirtc.xmpp.errors import NS_STREAMS, StreamError
from unirtc.xmpp.events import notify
from unirtc.xmpp.jid import JID, InvalidJID, normalize_domain
from unirtc.xmpp.parser import StreamOpened
from unirtc.xmpp.peer_identity import PeerCheck
from unirtc.xmpp.s2s import (
    NS_SASL,
    NS_TLS,
    Federation,
    LinkEvent,
    LinkSecurity,
    peer_certificates,
)
from unirtc.xmpp.stanzas import NS_CLIENT, STANZA_KINDS
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.s2s")


class IncomingSession:
    """One incoming server stream; the router's ``origin`` (``kind == "s2s"``) for its stanzas."""

    kind = "s2s"

    def __init__(self, federation: Federation, stream: XmppStream) -> None:
        self.federation = federation
        self.stream = stream
        self.router = federation.router
        self.local: str | None = None
        self.remote: str | None = None
        self.authenticated: set[str] = set()
        self.security = LinkSecurity()
        self.jid = JID.make(None, "localhost")
        self.available = False
        self.priority = 0
        self.presence: domish.Element | None = None
        self.data: dict[str, Any] = {}
        self.stanzas = 0
        self._sasl_done = False
        self._checks: dict[str, PeerCheck] = {}
        self._pending: set[str] = set()
        self._timeout = federation.clock.callLater(federation.negotiation_timeout, self._timed_out)

    # -- LocalSession --------------------------------------------------------------------------

    def deliver(self, element: domish.Element) -> None:
        """Answers to the peer travel on our own outgoing link to its domain (RFC 6120 §4.1:
        a server stream carries stanzas one way), so they are routed like any other."""
        self.router.route(element)

    def close(self, condition: str, text: str | None = None) -> None:
        self.stream.fail(condition, text)

    # -- stream events -------------------------------------------------------------------------

    def stream_opened(self, event: StreamOpened) -> None:
        """RFC 6120 §4.7: answer with our header, then check theirs, then offer the features."""
        local, remote = _domain(event.attrs.get("to")), _domain(event.attrs.get("from"))
        header = {"version": "1.0", "xml:lang": "en"}
        if local:
            header["from"] = local
        if remote:
            header["to"] = remote
        self.stream.open(header, {"db": NS_DIALBACK} if self.federation.dialback else None)
        if local is None or not self.federation.serves(local):
            raise StreamError("host-unknown", f"this server does not serve {event.attrs.get('to', '')!r}")
        if self.local is not None and local != self.local:
            raise StreamError("host-unknown", "a restarted stream must keep its 'to'")
        if remote is None and event.attrs.get("from"):
            raise StreamError("invalid-from", "the 'from' domain is malformed")
        if remote is not None and self.federation.serves(remote):
            raise StreamError("invalid-from", f"{remote} is one of our own domains")
        if event.attrs.get("version") is None:
            raise StreamError("unsupported-version", "this server needs XMPP 1.0 streams")
        self.local, self.remote = local, remote or self.remote
        if self.stream.secure:
            self.security.tls = True
            if self.remote is not None:
                self.security.record(self._check(self.remote))
        self.stream.send(self._features())

    def _features(self) -> domish.Element:
        features = domish.Element((NS_STREAMS, "features"))
        if self._sasl_done:
            return features  # RFC 6120 §6.4.6: nothing left to negotiate
        secure, federation = self.stream.secure, self.federation
        if not secure and federation.tls is not None:
            starttls = features.addElement((NS_TLS, "starttls"))
            if federation.require_encryption:
                starttls.addElement("required")
        if secure or not federation.require_encryption:
            if secure and self.remote is not None and self._check(self.remote).valid:
                features.addElement((NS_SASL, "mechanisms")).addElement("mechanism", content="EXTERNAL")
            if federation.dialback:
                features.addChild(dialback.feature())
        return features

    def stanza_received(self, element: domish.Element) -> None:
        if element.uri == NS_CLIENT and element.name in STANZA_KINDS:
            self._stanza(element)
        elif element.uri == NS_DIALBACK:
            self._dialback(element)
        elif element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_SASL:
            self._sasl(element)
        else:
            raise StreamError("unsupported-stanza-type", f"<{element.name}/> in {element.uri}")

    def stream_closed(self) -> None:
        self.stream.close()

    def connection_lost(self) -> None:
        if self._timeout.active():
            self._timeout.cancel()
        if self.federation.links is not None:
            self.federation.links.incoming_closed(self)
        if self.authenticated:
            log.info("s2s {remote}->{local} incoming link closed after {n} stanzas",
                     remote=",".join(sorted(self.authenticated)), local=self.local, n=self.stanzas)

    def _timed_out(self) -> None:
        if not self.authenticated:
            self.stream.fail("connection-timeout", "no authentication in time")

    # -- TLS and SASL EXTERNAL ------------------------------------------------------------------

    def _starttls(self) -> None:
        """RFC 6120 §5.4.2."""
        if self.stream.secure or self.federation.tls is None:
            self.stream.send(domish.Element((NS_TLS, "failure")))
            self.stream.close()
            return
        self.stream.send(domish.Element((NS_TLS, "proceed")))
        self.stream.start_tls(self.federation.tls.server())

    def _sasl(self, element: domish.Element) -> None:
        """RFC 6120 §6.4, XEP-0178: EXTERNAL only, and only for a certificate valid for the domain."""
        if self._sasl_done:
            raise StreamError("policy-violation", "already authenticated")
        if element.name != "auth" or element.getAttribute("mechanism") != "EXTERNAL":
            self._sasl_failure("aborted" if element.name == "abort" else "invalid-mechanism")
            return
        if not self.stream.secure:
            self._sasl_failure("encryption-required")
            return
        text = str(element).strip()
        try:
            authzid = normalize_domain(base64.b64decode(text, validate=True).decode("utf-8")) \
                if text not in ("", "=") else None
        except (binascii.Error, UnicodeDecodeError):
            self._sasl_failure("incorrect-encoding")
            return
        except InvalidJID:
            self._sasl_failure("invalid-authzid")
            return
        domain = authzid or self.remote
        if domain is None or (self.remote is not None and domain != self.remote):
            self._sasl_failure("invalid-authzid")
            return
        check = self._check(domain)
        if not check.valid:
            log.warn("s2s {remote}->{local}: SASL EXTERNAL refused: {reason}", remote=domain,
                     local=self.local, reason=check.reason)
            self._sasl_failure("not-authorized")
            return
        self.remote = domain
        self._sasl_done = True
        self.security.record(check)
        self.stream.send(domish.Element((NS_SASL, "success")))
        self.stream.restart()
        self._authenticated(domain, "SASL EXTERNAL")

    def _sasl_failure(self, condition: str) -> None:
        failure = domish.Element((NS_SASL, "failure"))
        failure.addElement(condition)
        self.stream.send(failure)

    def _check(self, domain: str) -> PeerCheck:
        check = self._checks.get(domain)
        if check is None:
            check = self._checks[domain] = self.federation.check_peer(peer_certificates(self.stream), domain)
            log.debug("s2s {domain} from {host}: {reason}", domain=domain, host=self.stream.peer_host,
                      reason=check.reason)
        return check

    # -- Server Dialback -----------------------------------------------------------------------

    def _dialback(self, element: domish.Element) -> None:
        try:
            request = dialback.parse(element)
        except DialbackError as e:
            raise StreamError(e.condition, e.text) from None
        if not request.is_request:
            log.info("s2s from {host}: ignored an unexpected dialback answer", host=self.stream.peer_host)
        elif request.kind == "verify":
            self._answer_verify(request)
        else:
            self._dialback_request(request)

    def _answer_verify(self, request: Dialback) -> None:
        """XEP-0220 §2.3: we are the authoritative server; was this key made by us?"""
        if not self.federation.serves(request.target):
            self._send(request.answer("error", "item-not-found"))
            return
        assert request.stream_id is not None
        expected = self.federation.key(request.sender, request.target, request.stream_id)
        verdict = "valid" if keys_match(expected, request.key) else "invalid"
        log.info("s2s {remote} asked whether our dialback key for {local} is ours: {verdict}",
                 remote=request.sender, local=request.target, verdict=verdict)
        self._send(request.answer(verdict))

    def _dialback_request(self, request: Dialback) -> None:
        """XEP-0220 §2.2: the peer claims ``request.sender``; check with that domain's server."""
        remote, local = request.sender, request.target
        if not self.federation.dialback:
            log.warn("s2s {remote}->{local}: refused dialback from {host}: [s2s] dialback = no",
                     remote=remote, local=local, host=self.stream.peer_host)
            self._send(request.answer("error", "not-allowed"))
            return
        if self.federation.require_encryption and not self.stream.secure:
            raise StreamError("policy-violation", "STARTTLS first ([s2s] require_encryption)")
        if not self.federation.serves(local):
            self._send(request.answer("error", "item-not-found"))
            return
        if self.federation.serves(remote):
            raise StreamError("invalid-from", f"{remote} is one of our own domains")
        if remote in self.authenticated:
            self._send(request.answer("valid"))
            return
        if remote in self._pending:
            return  # one verification per domain at a time
        if self.stream.secure and self._check(remote).valid:
            self.security.record(self._check(remote))
            self._verdict("valid", request, "dialback (certificate)")
            return
        links = self.federation.links
        if links is None:
            self._send(request.answer("error", "remote-server-not-found"))
            return
        self._pending.add(remote)
        log.info("s2s {remote}->{local}: verifying a dialback key with {remote}'s server",
                 remote=remote, local=local)
        verdict: Deferred[str] = links.verify(local, remote, self.stream.stream_id, request.key)
        verdict.addCallback(self._verdict, request, "dialback")

    def _verdict(self, verdict: str, request: Dialback, how: str) -> None:
        self._pending.discard(request.sender)
        if self.stream.closing:
            return
        if verdict == "valid":
            self.authenticated.add(request.sender)
            self._send(request.answer("valid"))
            self._authenticated(request.sender, how)
        elif verdict == "invalid":
            log.warn("s2s {remote}->{local}: dialback key refused by {remote}'s server (from {host})",
                     remote=request.sender, local=request.target, host=self.stream.peer_host)
            self._send(request.answer("invalid"))
        else:
            log.warn("s2s {remote}->{local}: dialback key could not be checked: {condition}",
                     remote=request.sender, local=request.target, condition=verdict)
            self._send(request.answer("error", verdict))

    def _send(self, answer: Dialback) -> None:
        self.stream.write(dialback.to_bytes(answer, prefixed=self.federation.dialback))

    def _authenticated(self, remote: str, how: str) -> None:
        self.authenticated.add(remote)
        self.security.auth = how
        self.jid = JID.make(None, remote)
        if self._timeout.active():
            self._timeout.cancel()
        log.info("s2s {remote}->{local} incoming link authenticated from {host} ({security})",
                 remote=remote, local=self.local, host=self.stream.peer_host, security=str(self.security))
        if self.federation.links is not None:
            self.federation.links.incoming_ready(self)
        notify(self.federation.bus, "s2s-ready",
               LinkEvent(self.local or "", remote, "incoming", self.security))

    # -- stanzas -------------------------------------------------------------------------------

    def _stanza(self, element: domish.Element) -> None:
        """RFC 6120 §8.1: addressed both ways, from an authenticated domain, to one of ours."""
        if not self.authenticated:
            raise StreamError("not-authorized", "authenticate before sending stanzas")
        sender, recipient = element.getAttribute("from"), element.getAttribute("to")
        if not sender or not recipient:
            raise StreamError("improper-addressing", "stanzas between servers need 'to' and 'from'")
        try:
            sender_domain = JID.parse(sender).domain
        except InvalidJID:
            raise StreamError("invalid-from", "the 'from' address is malformed") from None
        if sender_domain not in self.authenticated:
            log.warn("s2s from {host}: {claimed} is not authenticated on this stream (only {domains})",
                     host=self.stream.peer_host, claimed=sender_domain,
                     domains=", ".join(sorted(self.authenticated)))
            raise StreamError("invalid-from", f"{sender_domain} is not authenticated on this stream")
        try:
            to_domain: str | None = JID.parse(recipient).domain
        except InvalidJID:
            to_domain = None  # the router bounces it with jid-malformed
        if to_domain is not None and not self.federation.serves(to_domain):
            raise StreamError("host-unknown", f"this server does not serve {to_domain}")
        self.stanzas += 1
        self.router.route(element, self)


def _domain(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return normalize_domain(value)
    except InvalidJID:
        return None

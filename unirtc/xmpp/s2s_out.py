# -*- test-case-name: tests.protocol.test_s2s -*-
"""Outgoing federation streams: we connect to a remote domain's server to send it stanzas.

One stream per attempt, driven by an ``XmppStream`` in ``jabber:server``; the link manager
(``s2s_links.py``) chose the target and hears how the attempt ends. The steps, RFC 6120 §4-§6:

1. our header (``from`` our domain, ``to`` theirs, ``xmlns:db``); their header gives the
   stream id that dialback keys are bound to;
2. STARTTLS when offered (required unless ``[s2s] require_encryption = no``), or direct TLS
   when the target came from an ``_xmpps-server`` record; then their certificate is checked
   for their domain. If it is not valid, only ``[s2s] dialback = yes`` lets us go on (then,
   as with any dialback, trust rests on DNS), else the attempt is refused with a log line;
3. the stream is *established*: the link may now send ``<db:verify/>`` requests on it, which
   must not wait for our own authentication (two servers verifying each other would wait
   forever);
4. we authenticate: SASL EXTERNAL with our certificate if they offer it; if they refuse it
   or do not offer it, Server Dialback if both sides allow it;
5. the link is ready and the manager sends its queue.
"""

from __future__ import annotations

import base64
from typing import Protocol

from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.xmpp import dialback
from unirtc.xmpp.dialback import NS_DIALBACK, NS_DIALBACK_FEATURE, Dialback, DialbackError
from unirtc.xmpp.errors import NS_STREAMS, StreamError
from unirtc.xmpp.parser import StreamOpened
from unirtc.xmpp.resolver import Target
from unirtc.xmpp.s2s import (
    NS_SASL,
    NS_TLS,
    Federation,
    LinkSecurity,
    peer_certificates,
    write_initial_header,
)
from unirtc.xmpp.stream import XmppStream

log = get_logger("unirtc.xmpp.s2s")


class LinkCallbacks(Protocol):
    """What an outgoing session reports to its link (``s2s_links.OutgoingLink``)."""

    local: str
    remote: str

    def session_established(self, session: OutgoingSession) -> None: ...

    def session_ready(self, session: OutgoingSession) -> None: ...

    def session_failed(self, session: OutgoingSession, reason: str, final: bool) -> None: ...

    def session_closed(self, session: OutgoingSession, reason: str) -> None: ...

    def verify_answered(self, answer: Dialback) -> None: ...


class OutgoingSession:
    """One attempt at an outgoing stream to ``link.remote`` through ``target``."""

    kind = "s2s-out"

    def __init__(self, federation: Federation, link: LinkCallbacks, target: Target, stream: XmppStream) -> None:
        self.federation = federation
        self.link = link
        self.target = target
        self.stream = stream
        self.security = LinkSecurity()
        self.stream_id: str | None = None
        self.established = False
        self.ready = False
        self.ended = False
        self._auth: str | None = None  # "sasl", "sasl-done" or "dialback" once started
        self._dialback_offered = False
        self._checked = False
        write_initial_header(stream, link.local, link.remote)

    @property
    def name(self) -> str:
        return f"{self.link.local}->{self.link.remote}"

    def send(self, element: domish.Element) -> None:
        self.stream.send(element)

    def send_dialback(self, item: Dialback) -> None:
        self.stream.write(dialback.to_bytes(item))

    # -- stream events -------------------------------------------------------------------------

    def stream_opened(self, event: StreamOpened) -> None:
        stream_id = event.attrs.get("id")
        if not stream_id:
            raise StreamError("undefined-condition", "your stream header has no id")
        if event.attrs.get("version") is None:
            self._refuse(f"{self.link.remote} does not speak XMPP 1.0", "unsupported-version")
            return
        self.stream_id = stream_id
        self._dialback_offered = event.prefixes.get("db") == NS_DIALBACK  # XEP-0220 §2.1.1
        if self.stream.secure and not self._checked:
            self._checked = True
            self.security.tls = True
            check = self.federation.check_peer(peer_certificates(self.stream), self.link.remote)
            self.security.record(check)
            if not check.valid:
                if not self.federation.dialback:
                    self._refuse(f"the certificate of {self.link.remote} is not valid ({check.reason}) "
                                 "and [s2s] dialback = no", "policy-violation")
                    return
                log.info("s2s {name}: {reason}; continuing with dialback rules (trusting DNS)",
                         name=self.name, reason=check.reason)

    def stanza_received(self, element: domish.Element) -> None:
        if self.ended:
            return
        uri, name = element.uri, element.name
        if uri == NS_STREAMS and name == "features":
            self._features(element)
        elif uri == NS_TLS:
            self._tls(name)
        elif uri == NS_SASL and name in ("success", "failure"):
            self._sasl(element)
        elif uri == NS_DIALBACK:
            self._dialback(element)
        elif uri == NS_STREAMS and name == "error":
            condition = next((c.name for c in element.elements() if c.name != "text"), "undefined-condition")
            text = next((str(c) for c in element.elements() if c.name == "text"), "")
            self._end(f"{self.link.remote} sent a stream error: {condition} {text}".rstrip(),
                      final=self.established)
        else:
            raise StreamError("unsupported-stanza-type", "this stream only carries our stanzas")

    def stream_closed(self) -> None:
        self.stream.close()
        self._end(f"{self.link.remote} closed the stream", final=False)

    def connection_lost(self) -> None:
        self._end("the connection was lost", final=False)

    # -- negotiation ---------------------------------------------------------------------------

    def _features(self, features: domish.Element) -> None:
        if self._auth == "sasl-done":
            self._ready("SASL EXTERNAL")
            return
        if self._auth is not None:
            return
        offered = {(c.uri, c.name) for c in features.elements()}
        if not self.stream.secure:
            if (NS_TLS, "starttls") in offered and self.federation.tls is not None:
                self.stream.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                return
            if self.federation.require_encryption:
                self._refuse(f"{self.link.remote} does not offer STARTTLS and [s2s] require_encryption = yes",
                             "policy-violation")
                return
        if not self.established:
            self.established = True
            self.link.session_established(self)
        self._dialback_offered = self._dialback_offered or (NS_DIALBACK_FEATURE, "dialback") in offered
        mechanisms = {str(m).strip() for child in features.elements(NS_SASL, "mechanisms")
                      for m in child.elements() if m.name == "mechanism"}
        if self.stream.secure and "EXTERNAL" in mechanisms:
            self._auth = "sasl"
            authzid = base64.b64encode(self.link.local.encode("utf-8")).decode("ascii")
            self.stream.write(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>".encode())
            return
        self._try_dialback("it does not offer SASL EXTERNAL")

    def _tls(self, name: str) -> None:
        if name != "proceed" or self.federation.tls is None:
            self._end(f"{self.link.remote} refused STARTTLS", final=False)
            self.stream.close()
            return
        self.stream.start_tls(self.federation.tls.client(self.link.remote))
        write_initial_header(self.stream, self.link.local, self.link.remote)

    def _sasl(self, element: domish.Element) -> None:
        if self._auth != "sasl":
            raise StreamError("policy-violation", "no SASL exchange is in progress")
        if element.name == "success":
            self._auth = "sasl-done"
            self.stream.restart()  # RFC 6120 §6.4.6
            write_initial_header(self.stream, self.link.local, self.link.remote)
            return
        condition = next((c.name for c in element.elements() if c.name != "text"), "not-authorized")
        log.info("s2s {name}: {remote} refused SASL EXTERNAL ({condition})",
                 name=self.name, remote=self.link.remote, condition=condition)
        self._auth = None
        self._try_dialback(f"it refused our certificate ({condition})")

    def _try_dialback(self, why: str) -> None:
        if not self.federation.dialback:
            self._refuse(f"cannot authenticate to {self.link.remote}: {why} and [s2s] dialback = no",
                         "policy-violation")
            return
        if not self._dialback_offered:
            self._refuse(f"cannot authenticate to {self.link.remote}: {why} and it does not offer dialback",
                         "policy-violation")
            return
        assert self.stream_id is not None
        self._auth = "dialback"
        key = self.federation.key(self.link.remote, self.link.local, self.stream_id)
        self.send_dialback(Dialback("result", self.link.local, self.link.remote, key))

    def _dialback(self, element: domish.Element) -> None:
        try:
            answer = dialback.parse(element)
        except DialbackError as e:
            raise StreamError(e.condition, e.text) from None
        if answer.is_request:
            log.info("s2s {name}: ignored a dialback request on our outgoing stream", name=self.name)
        elif answer.kind == "verify":
            self.link.verify_answered(answer)
        elif (answer.sender, answer.target) != (self.link.remote, self.link.local) or self._auth != "dialback":
            log.info("s2s {name}: ignored a dialback result we did not ask for", name=self.name)
        elif answer.type == "valid":
            self._ready("dialback")
        else:
            reason = "refused our dialback key" if answer.type == "invalid" else f"dialback error {answer.error}"
            self._refuse(f"{self.link.remote} {reason}", "not-authorized")

    def _ready(self, how: str) -> None:
        self.security.auth = how
        self.ready = True
        self.link.session_ready(self)

    # -- ending --------------------------------------------------------------------------------

    def _refuse(self, reason: str, condition: str) -> None:
        """A policy refusal: no other target of this domain would do better."""
        self._end(reason, final=True)
        self.stream.fail(condition, reason)

    def _end(self, reason: str, final: bool) -> None:
        if self.ended:
            return
        self.ended = True
        if self.ready:
            self.link.session_closed(self, reason)
        else:
            self.link.session_failed(self, reason, final)

    def close(self) -> None:
        """Close the stream (idle link, shutdown); the link has already forgotten us."""
        self.ended = True
        self.stream.close()


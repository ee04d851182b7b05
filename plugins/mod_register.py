"""XEP-0077 in-band registration, for changing one's own password only (§3.3).

Accounts are created by the administrator (``unirtc-ctl adduser``): no registration form is
offered before authentication and account removal (``<remove/>``) is ``not-allowed``. A
logged-in client sends its username and a new password; every stored secret (SCRAM, SIP
digest) is re-derived from it by the directory, so the SIP phone's password changes too.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from unirtc.xmpp.stanzas import StanzaError

NS_REGISTER = "jabber:iq:register"
MAX_PASSWORD = 1023


def load(module) -> None:
    module.add_feature(NS_REGISTER)
    module.hook(f"iq-get/host/{NS_REGISTER}:query", _form)
    module.hook(f"iq-set/host/{NS_REGISTER}:query", lambda event: _change(module, event))


def _account(event):
    origin = event.origin
    if origin is None or origin.kind != "c2s":
        raise StanzaError("not-allowed", text="registration is handled by the administrator")
    return origin.jid


def _form(event) -> domish.Element:
    """XEP-0077 §3.2: already registered; the fields to send for a password change."""
    jid = _account(event)
    query = domish.Element((NS_REGISTER, "query"))
    query.addElement("registered")
    query.addElement("username", content=jid.local)
    query.addElement("password")
    return event.result(query)


def _change(module, event) -> Deferred[domish.Element]:
    jid = _account(event)
    query = next(iter(event.stanza.elements(NS_REGISTER, "query")))
    if any(True for _ in query.elements(NS_REGISTER, "remove")):
        raise StanzaError("not-allowed", text="accounts are removed by the administrator")
    fields = {child.name: str(child) for child in query.elements() if child.uri == NS_REGISTER}
    if fields.get("username") != jid.local:
        raise StanzaError("not-authorized", text="you can only change your own password")
    password = fields.get("password", "")
    if not password or len(password) > MAX_PASSWORD:
        raise StanzaError("bad-request", text="a non-empty password is required")

    def failed(failure):
        if failure.check(ValueError):  # PRECIS OpaqueString refused it
            raise StanzaError("not-acceptable", text=str(failure.value))
        return failure

    d = module.directory.set_password(jid.local, jid.domain, password)
    d.addErrback(failed)
    d.addCallback(lambda _: module.log.info("{jid} changed its password", jid=jid.bare.full))
    return d.addCallback(lambda _: event.result())

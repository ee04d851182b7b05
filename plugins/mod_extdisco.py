"""XEP-0215 External Service Discovery: STUN/TURN services with fresh TURN credentials.

Conversations, Dino and Gajim ask the server (``urn:xmpp:extdisco:2``) before an A/V call. The
credentials are the same TURN REST ones the web endpoint and ``unirtc-ctl turn-credentials``
issue (``unirtc.turn.issuer``), so coturn with ``use-auth-secret`` accepts them. Only this
server's own authenticated users get credentials; a request from anyone else is ``forbidden``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.words.xish import domish

from unirtc.settings import parse_ice_uri
from unirtc.turn.issuer import NoTurnSecret, TurnCredentials, issue
from unirtc.xmpp.stanzas import StanzaError

NS_EXTDISCO = "urn:xmpp:extdisco:2"


def load(module) -> None:
    module.add_feature(NS_EXTDISCO)
    module.hook(f"iq-get/host/{NS_EXTDISCO}:services", lambda event: _services(module, event))
    module.hook(f"iq-get/host/{NS_EXTDISCO}:credentials", lambda event: _credentials(module, event))


def _requester(module, event) -> str:
    """The bare JID of a local, authenticated user, or StanzaError("forbidden")."""
    origin, sender = event.origin, event.sender
    if origin is None or origin.kind != "c2s" or sender is None or sender.domain != module.settings.server.domain:
        raise StanzaError("forbidden", text="TURN credentials are issued to this server's own users only")
    return str(sender.bare)


def _fresh(module, account: str) -> TurnCredentials | None:
    try:
        return issue(module.settings.turn, account, module.reactor.seconds())
    except NoTurnSecret:
        return None


def _service_elements(module, credentials: TurnCredentials | None, type_filter: str | None):
    """One ``<service/>`` per configured URI; TURN ones only when credentials can be issued."""
    expires = None
    if credentials is not None:
        expires = datetime.fromtimestamp(credentials.expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for uri in module.settings.turn.uris:
        parsed = parse_ice_uri(uri)
        is_turn = parsed.scheme.startswith("turn")
        if type_filter and parsed.scheme != type_filter:
            continue
        if is_turn and credentials is None:
            continue
        service = domish.Element((NS_EXTDISCO, "service"))
        service["type"] = parsed.scheme
        service["host"] = parsed.host
        service["port"] = str(parsed.port)
        service["transport"] = parsed.transport
        if is_turn:
            service["username"] = credentials.username
            service["password"] = credentials.password
            service["expires"] = expires
            service["restricted"] = "1"
        yield service


def _services(module, event) -> domish.Element:
    account = _requester(module, event)
    request = next(event.stanza.elements(NS_EXTDISCO, "services"))
    type_filter = request.getAttribute("type")
    if type_filter is not None and type_filter not in ("stun", "stuns", "turn", "turns"):
        raise StanzaError("bad-request", text=f"unknown service type {type_filter!r}")
    payload = domish.Element((NS_EXTDISCO, "services"))
    if type_filter:
        payload["type"] = type_filter
    for service in _service_elements(module, _fresh(module, account), type_filter):
        payload.addChild(service)
    return event.result(payload)


def _credentials(module, event) -> domish.Element:
    """Credentials for one service the client names by host (and optionally type and port)."""
    account = _requester(module, event)
    request = next(event.stanza.elements(NS_EXTDISCO, "credentials"))
    wanted = next(request.elements(NS_EXTDISCO, "service"), None)
    if wanted is None or not wanted.getAttribute("host"):
        raise StanzaError("bad-request", text="name the service: <service host='...' type='turn'/>")
    credentials = _fresh(module, account)
    for service in _service_elements(module, credentials, wanted.getAttribute("type")):
        if service["host"] != wanted["host"] or service.getAttribute("username") is None:
            continue
        if wanted.getAttribute("port") not in (None, service["port"]):
            continue
        payload = domish.Element((NS_EXTDISCO, "credentials"))
        payload.addChild(service)
        return event.result(payload)
    raise StanzaError("item-not-found", text="no TURN service with credentials matches that request")

# -*- test-case-name: tests.unit.test_sip_registrar -*-
"""The registrar (RFC 3261 §10.3): authenticated REGISTER in, bindings changed, 200 OK out.

The address-of-record is the account: ``sip:joe@falcot.com`` and ``sip:joe@sip.falcot.com``
both name ``joe@falcot.com``, and only joe (after digest authentication) may change its
bindings.  Contacts carrying ``+sip.instance`` and ``reg-id`` (RFC 5626) are matched by those
rather than by URI, so a phone that comes back on a new address replaces its old binding.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from unirtc.logging import get_logger
from unirtc.sip.bindings import Binding, BindingStore
from unirtc.sip.digest import Address, DigestAuthenticator
from unirtc.sip.message import SipRequest, SipResponse, make_response
from unirtc.sip.uri import NameAddr, SipParseError, SipURI, parse_uri, quote_string, scan_quoted
from unirtc.xmpp.jid import InvalidJID, normalize_localpart

DEFAULT_EXPIRES = 3600
MIN_EXPIRES = 60
MAX_EXPIRES = 86400
MAX_CONTACTS = 16
MAX_CONTACT_URI = 2047  # the database column
MAX_CALL_ID = 1023
MAX_INSTANCE = 1023
SUPPORTED: frozenset[str] = frozenset()  # no option tag is required-able here yet
_Q = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_DELTA = re.compile(r"[0-9]{1,10}")

log = get_logger("unirtc.sip.registrar")


class _Reject(Exception):
    """Abandon the REGISTER with this final response (status, reason, extra headers)."""

    def __init__(self, status: int, reason: str | None = None, **headers: str) -> None:
        super().__init__(status, reason)
        self.status, self.reason, self.headers = status, reason, headers


@dataclass(frozen=True)
class _Contact:
    """One Contact of the REGISTER, checked."""

    uri: SipURI
    expires: int
    q: float
    instance: str | None
    reg_id: int | None


def _delta(value: str | None) -> int | None:
    if value is None or not _DELTA.fullmatch(value):
        return None
    return min(int(value), 2**32 - 1)


def _instance(value: str | None) -> str | None:
    """The +sip.instance value without its quotes (RFC 5626 §4.1: a quoted <urn>)."""
    if value is None:
        return None
    if value.startswith('"'):
        value = scan_quoted(value, 0)[0]
    if not value or len(value) > MAX_INSTANCE:
        raise _Reject(400, "Bad +sip.instance parameter")
    return value


def _reg_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not _DELTA.fullmatch(value) or not 0 < int(value) < 2**31:
        raise _Reject(400, "Bad reg-id parameter")
    return int(value)


def _matches(binding: Binding, contact: _Contact) -> bool:
    """Same binding? RFC 5626 §6: by instance and reg-id when given, else by URI (§10.3 step 7)."""
    if contact.instance is not None and contact.reg_id is not None:
        return binding.instance == contact.instance and binding.reg_id == contact.reg_id
    if contact.instance is not None and binding.instance == contact.instance and binding.reg_id is None:
        return True
    try:
        return parse_uri(binding.contact) == contact.uri
    except SipParseError:
        return False


def _format(binding: Binding, now: float) -> str:
    text = f"<{binding.contact}>;expires={binding.expires_in(now)}"
    if binding.q != 1.0:
        text += f";q={binding.q:g}"
    if binding.instance is not None:
        text += f";+sip.instance={quote_string(binding.instance)}"
        if binding.reg_id is not None:
            text += f";reg-id={binding.reg_id}"
    return text


class Registrar:
    """Handles REGISTER for the domains ``realm_for`` maps to an account domain.

    :param authenticator: the shared :class:`DigestAuthenticator`
    :param store: the shared :class:`BindingStore`
    :param clock: an ``IReactorTime``
    :param realm_for: SIP domain -> account domain, None when not served (``digest.domain_map``)
    :param on_change: called with (aor, bindings now) after each change, e.g. to fire hooks
    """

    def __init__(
        self,
        authenticator: DigestAuthenticator,
        store: BindingStore,
        clock: Any,
        realm_for: Callable[[str], str | None],
        *,
        default_expires: int = DEFAULT_EXPIRES,
        min_expires: int = MIN_EXPIRES,
        max_expires: int = MAX_EXPIRES,
        max_contacts: int = MAX_CONTACTS,
        on_change: Callable[[tuple[str, str], list[Binding]], None] | None = None,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        self.authenticator = authenticator
        self.store = store
        self.clock = clock
        self.realm_for = realm_for
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.max_contacts = max_contacts
        self.on_change = on_change

    def handle(self, request: SipRequest, source: Address, flow: str | None) -> Deferred[SipResponse]:
        """The final response to a REGISTER (never fails: errors become 400 or 500)."""
        return ensureDeferred(self._handle(request, source, flow))

    async def _handle(self, request: SipRequest, source: Address, flow: str | None) -> SipResponse:
        try:
            return await self._register(request, source, flow)
        except _Reject as reject:
            response = make_response(request, reject.status, reject.reason, _tag())
            for name, value in reject.headers.items():
                response.headers.add(name.replace("_", "-"), value)
            return response
        except SipParseError as error:
            return make_response(request, error.status, error.reason, _tag())
        except Exception:
            log.failure("REGISTER failed")
            return make_response(request, 500, to_tag=_tag())

    async def _register(self, request: SipRequest, source: Address, flow: str | None) -> SipResponse:
        if request.method != "REGISTER":
            raise _Reject(405, Allow="REGISTER")
        unsupported = [tag for tag in request.headers.get_list("Require")
                       if tag.lower() not in SUPPORTED]
        if unsupported:
            raise _Reject(420, Unsupported=", ".join(unsupported))
        aor_uri = request.to.uri
        realm = None
        if isinstance(aor_uri, SipURI) and aor_uri.scheme in ("sip", "sips") and aor_uri.user:
            realm = self.realm_for(aor_uri.host)
        if realm is None:
            raise _Reject(404, "Not Found (address-of-record not served here)")
        await self.store.ready
        result = await self.authenticator.verify(request, source=source)
        if result.account is None:
            return self.authenticator.respond(request, result)
        if _localpart(aor_uri.user or "") != result.account[0] or realm != result.account[1]:
            raise _Reject(403, "Forbidden (To is not the authenticated account)")
        aor = result.account
        contacts = self._contacts(request)
        now = float(self.clock.seconds())
        if contacts is not None:
            bindings = self._apply(request, aor, contacts, source, flow, now)
            try:
                await self.store.update(aor, bindings)
            except Exception:
                log.failure("Storing the bindings of {aor} failed", aor=aor)
                raise _Reject(500, "Server Internal Error (bindings not stored)",
                              Retry_After="10") from None
            if self.on_change is not None:
                self.on_change(aor, self.store.lookup(aor, now))
        response = make_response(request, 200, to_tag=_tag())
        for binding in self.store.lookup(aor, now):
            response.headers.add("Contact", _format(binding, now))
        response.headers.add("Date", email.utils.formatdate(now, usegmt=True))
        return response

    def _contacts(self, request: SipRequest) -> list[_Contact] | str | None:
        """The checked contacts, "*" for the wildcard, None for a query; raises _Reject."""
        if "Contact" not in request.headers:
            return None
        contact = request.contact
        header_expires = request.expires
        if contact == "*":
            if header_expires != 0:
                raise _Reject(400, "Bad Request (Contact: * needs Expires: 0)")
            return "*"
        if len(contact) > self.max_contacts:
            raise _Reject(403, "Forbidden (too many contacts)")
        if len(request.call_id) > MAX_CALL_ID:
            raise _Reject(400, "Bad Request (Call-ID too long)")
        checked = [self._contact(name_addr, header_expires) for name_addr in contact]
        brief = [c.expires for c in checked if 0 < c.expires < self.min_expires]
        if brief:
            raise _Reject(423, Min_Expires=str(self.min_expires))
        return checked

    def _contact(self, name_addr: NameAddr, header_expires: int | None) -> _Contact:
        uri = name_addr.uri
        if not isinstance(uri, SipURI) or uri.scheme not in ("sip", "sips"):
            raise _Reject(400, "Bad Request (Contact must be a sip: or sips: URI)")
        if len(str(uri)) > MAX_CONTACT_URI:
            raise _Reject(400, "Bad Request (Contact URI too long)")
        params = name_addr.params
        expires = _delta(params.get("expires"))  # RFC 3261 §10.3 step 6: param, header, default
        if expires is None:
            expires = header_expires if header_expires is not None else self.default_expires
        q_text = params.get("q")
        if q_text is not None and not _Q.fullmatch(q_text):
            raise _Reject(400, "Bad Request (bad q value)")
        instance = _instance(params.get("+sip.instance"))
        reg_id = _reg_id(params.get("reg-id")) if instance is not None else None
        return _Contact(uri, min(expires, self.max_expires),
                        1.0 if q_text is None else float(q_text), instance, reg_id)

    def _apply(
        self,
        request: SipRequest,
        aor: tuple[str, str],
        contacts: list[_Contact] | str,
        source: Address,
        flow: str | None,
        now: float,
    ) -> list[Binding]:
        """The account's bindings after this REGISTER (RFC 3261 §10.3 steps 6-7)."""
        call_id, cseq = request.call_id, request.cseq.number
        bindings = self.store.lookup(aor, now)
        if contacts == "*":
            for binding in bindings:
                _check_order(binding, call_id, cseq)
            return []
        assert not isinstance(contacts, str)
        user_agent = (request.headers.get("User-Agent") or "")[:255] or None
        for contact in contacts:
            index = next((i for i, b in enumerate(bindings) if _matches(b, contact)), None)
            if index is not None:
                _check_order(bindings[index], call_id, cseq)
            if contact.expires == 0:
                if index is not None:
                    del bindings[index]
                continue
            binding = Binding(
                aor=aor, contact=str(contact.uri), expires_at=now + contact.expires, q=contact.q,
                call_id=call_id, cseq=cseq, instance=contact.instance, reg_id=contact.reg_id,
                flow=flow, source=source, user_agent=user_agent,
            )
            if index is None:
                bindings.append(binding)
            else:
                bindings[index] = binding
        if len(bindings) > self.max_contacts:
            raise _Reject(403, "Forbidden (too many contacts)")
        return bindings


def _check_order(binding: Binding, call_id: str, cseq: int) -> None:
    """§10.3 step 7: the same Call-ID with a CSeq not above the stored one fails the request."""
    if binding.call_id == call_id and cseq <= binding.cseq:
        raise _Reject(500, "Server Internal Error (out-of-order REGISTER)")


def _localpart(user: str) -> str | None:
    try:
        return normalize_localpart(user)
    except InvalidJID:
        return None


def _tag() -> str:
    return secrets.token_hex(8)

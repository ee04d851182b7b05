"""``GET /turn``: short-lived TURN credentials for an authenticated account, as JSON.

The TURN REST API draft's response (draft-uberti-behave-turn-rest-00 §2.2) plus the WebRTC
``iceServers`` list, for web pages and SIP web phones.  The account authenticates with HTTP
Basic (RFC 7617) against the directory; the user part may be ``joe`` or ``joe@falcot.com``.

Guessing is throttled per source address and per account (``unirtc.web.login``).  A throttled
attempt gets 429 with Retry-After (RFC 6585) at once, *without* checking the password: the
answer is honest and standard, the server holds no delayed request or timer for an attacker's
connection (a delayed answer would keep every attacker connection open, a resource the attacker
controls), and the key derivation behind the check costs no CPU while the key is blocked.

Passwords, both the account's and the issued TURN one, are never logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from unirtc.logging import get_logger
from unirtc.settings import Settings
from unirtc.sockets import is_loopback
from unirtc.throttle import FailureThrottle, address_key
from unirtc.turn.issuer import issue
from unirtc.web.login import MAX_IN_FLIGHT, PasswordGate, Reply, throttled
from unirtc.xmpp.jid import JID

log = get_logger("unirtc.web.turn")

_TTL = re.compile(rb"[0-9]{1,9}")
_MAX_AUTHORIZATION = 2048
__all__ = ["MAX_IN_FLIGHT", "TurnCredentialsResource", "account_of", "basic_credentials"]


def basic_credentials(header: bytes | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic`` header, or None if absent or malformed."""
    if header is None or len(header) > _MAX_AUTHORIZATION:
        return None
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, colon, password = text.partition(":")
    if not colon or not user:
        return None
    return user, password


def account_of(user: str, domain: str) -> JID | None:
    """The bare JID a Basic user part names on this server (``joe`` means joe@domain), or None."""
    if "@" not in user:
        user = f"{user}@{domain}"
    try:
        jid = JID.parse(user)
    except ValueError:
        return None
    if jid.local is None or jid.resource is not None or jid.domain != domain:
        return None
    return jid


class TurnCredentialsResource(Resource):
    """Issues TURN credentials to accounts that authenticate; see the module docstring."""

    isLeaf = True

    def __init__(self, settings: Settings, directory: Any, clock: Any,
                 accounts: FailureThrottle | None = None, addresses: FailureThrottle | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.directory = directory
        self.clock = clock
        self.gate = PasswordGate(directory, clock, self._report, accounts, addresses)
        self.accounts = self.gate.accounts
        self.addresses = self.gate.addresses

    def _answer(self, request: Request, code: int, body: dict[str, Any]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode("utf-8") + b"\n"

    def _challenge(self, request: Request, message: str) -> bytes:
        realm = self.settings.server.domain
        request.setHeader(b"www-authenticate", f'Basic realm="{realm}", charset="UTF-8"'.encode("ascii"))
        return self._answer(request, 401, {"error": message})

    def _ttl(self, request: Request) -> int | None:
        """The ``ttl`` query parameter; ValueError for anything but one number in range."""
        args = request.args or {}
        service = args.get(b"service")
        if service is not None and service != [b"turn"]:
            raise ValueError("service must be turn")
        values = args.get(b"ttl")
        if values is None:
            return None
        if len(values) != 1 or not _TTL.fullmatch(values[0]):
            raise ValueError(f"ttl must be a number of seconds between 1 and {self.settings.turn.ttl}")
        ttl = int(values[0])
        if not 1 <= ttl <= self.settings.turn.ttl:
            raise ValueError(f"ttl must be a number of seconds between 1 and {self.settings.turn.ttl}")
        return ttl

    def render(self, request: Request) -> bytes | int:
        """405 with Allow for every method but GET and HEAD (Twisted would say 501 for some)."""
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return self._answer(request, 405, {"error": "use GET"})
        return super().render(request)

    def render_GET(self, request: Request) -> bytes | int:
        if not self.settings.turn.secret:
            return self._answer(request, 503, {"error": "this server issues no TURN credentials "
                                                        "(no [turn] secret is configured)"})
        host = request.getClientAddress().host
        if not request.isSecure() and not is_loopback(host):
            return self._answer(request, 403, {"error": "use HTTPS: passwords are not accepted in clear"})
        try:
            ttl = self._ttl(request)
        except ValueError as e:
            return self._answer(request, 400, {"error": str(e)})
        address = address_key(host)
        now = self.clock.seconds()
        wait = self.gate.address_wait(address, now)
        if wait is not None:
            return self._answer(request, 429, throttled(request, wait))
        credentials = basic_credentials(request.getHeader(b"authorization"))
        if credentials is None:
            if request.getHeader(b"authorization") is not None:
                self.addresses.failure(address, now)
            return self._challenge(request, "authenticate with your account and password (HTTP Basic)")
        user, password = credentials
        account = account_of(user, self.settings.server.domain)
        if account is None:
            self.gate.failed(address, None, host, "not an account of this server")
            return self._challenge(request, "wrong account or password")
        wait = self.gate.account_wait(account, now)
        if wait is not None:
            return self._answer(request, 429, throttled(request, wait))
        self._check(request, account, password, address, host, ttl)
        return NOT_DONE_YET

    def _check(self, request: Request, account: JID, password: str, address: str, host: str,
               ttl: int | None) -> None:
        def ok(reply: Reply) -> None:
            if not reply.gone:
                reply.send(self._issue(request, account, ttl, self.clock.seconds(), host))

        def wrong(reply: Reply) -> None:
            reply.send(self._challenge(request, "wrong account or password"))

        def error(reply: Reply, failure: Failure) -> None:
            log.failure("TURN credentials for {account}: the directory could not be read",
                        failure, account=str(account))
            reply.send(self._answer(request, 503, {"error": "the account directory is unavailable"}))

        self.gate.verify(request, account, password, address, host, ok, wrong, error)

    def _issue(self, request: Request, account: JID, ttl: int | None, now: float, host: str) -> bytes:
        credentials = issue(self.settings.turn, str(account), now, ttl)
        log.info("Issued TURN credentials to {account} from {host}, valid {ttl} s",
                 account=str(account), host=host, ttl=credentials.ttl)
        return self._answer(request, 200, credentials.as_json())

    def _report(self, account: str, host: str, reason: str, delay: float) -> None:
        """Log a failed login (the gate has counted it): at info once it earns a wait."""
        if delay > 0:
            log.info("TURN credentials: failed login for {account} from {host} ({reason}); further "
                     "attempts refused for {delay:.0f} s", account=account, host=host,
                     reason=reason, delay=delay)
        else:
            log.debug("TURN credentials: failed login for {account} from {host} ({reason})",
                      account=account, host=host, reason=reason)

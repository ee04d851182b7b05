# -*- test-case-name: tests.protocol.test_phone -*-
"""``/phone``: the built-in web phone (its page, script, JsSIP) and its login endpoint.

The page (``unirtc/web/phone/``) logs in by POSTing ``{"user", "password"}`` as JSON to
``/phone/session``; the account is checked against the directory like ``GET /turn`` (HTTPS only,
the same per-address and per-account failure throttling, 429 with Retry-After), and the answer
is the phone's configuration for that person: SIP identity and WebSocket URI, and TURN servers
with fresh REST credentials from the issuer, expiring (no static TURN password is ever sent).
Requiring ``application/json`` keeps other sites' forms out: a cross-site script cannot send
that content type without a CORS preflight, which is never granted.

With ``[web] click_to_call``, ``/phone/guest`` lets people without an account call that one
SIP URI (see ``GuestSession``).

JsSIP is served at ``/phone/jssip.js`` from ``[web] jssip``: a browser build as is, or the npm
package folder, bundled by ``commonjs.py`` on first use (by default the checkout's
``node_modules/jssip``, installed by ``make node-deps``).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from pathlib import Path
from typing import Any

from twisted.python.failure import Failure
from twisted.web.pages import notFound
from twisted.web.resource import EncodingResourceWrapper, Resource
from twisted.web.server import NOT_DONE_YET, GzipEncoderFactory, Request
from twisted.web.util import redirectTo

from unirtc.config import normalize_origin
from unirtc.logging import get_logger
from unirtc.settings import Settings
from unirtc.sockets import is_loopback
from unirtc.throttle import FailureThrottle, address_key
from unirtc.turn.issuer import NoTurnSecret, issue
from unirtc.web.commonjs import BundleError, bundle
from unirtc.web.login import PasswordGate, Reply, throttled
from unirtc.web.turn import account_of
from unirtc.web.websocket import OriginPolicy
from unirtc.xmpp.jid import JID

log = get_logger("unirtc.web.phone")

STATIC = Path(__file__).with_name("phone")
CHECKOUT_JSSIP = Path(__file__).resolve().parents[2] / "node_modules" / "jssip"
MAX_BODY = 4096
PHONE_TTL = 43200  # TURN credentials for a phone page: half a day at most, refreshed before expiry
GUEST_TTL = 3600  # a guest's TURN credentials: one call's worth (coturn checks them on each refresh)
GUEST_IDENTITY = "sip:anonymous@anonymous.invalid"  # RFC 3323 §4.1.1.3's anonymous From
PAGES = {
    b"": ("index.html", "text/html; charset=utf-8"),
    b"phone.js": ("phone.js", "text/javascript; charset=utf-8"),
    b"phone.css": ("phone.css", "text/css; charset=utf-8"),
}
# The page's own files only; media from the microphone; WebSockets back to this origin.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; media-src 'self' blob: mediastream:; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'")


def _secure_headers(request: Request, content_type: str) -> None:
    request.setHeader(b"content-type", content_type.encode("ascii"))
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"content-security-policy", CSP.encode("ascii"))


def _json(request: Request, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    _secure_headers(request, "application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body).encode("utf-8") + b"\n"


def websocket_url(settings: Settings, request_host: str | None, secure: bool) -> str | None:
    """The SIP WebSocket URI for a page loaded from ``request_host`` (the Host header): the same
    host when it is an allowed Origin (the page's socket then passes the Origin check), else the
    account domain and the listener's port.  None when SIP over WebSocket is off."""
    from unirtc.sip.websocket import listener_address

    if not settings.sip.websocket or not settings.web.listen:
        return None
    scheme = "wss" if secure else "ws"
    if request_host:
        origin = normalize_origin(f"{'https' if secure else 'http'}://{request_host}")
        if origin is not None and OriginPolicy(settings.web.origins).allows(origin):
            return f"{scheme}://{origin.split('://', 1)[1]}/{settings.sip.websocket}"
    address = listener_address(settings.web.listen)
    port = f":{address[1]}" if address is not None else ""
    return f"{scheme}://{settings.server.domain}{port}/{settings.sip.websocket}"


def phone_config(settings: Settings, account: JID, now: float, websocket: str | None) -> dict[str, Any]:
    """What the page needs to be ``account``'s phone (see the module docstring)."""
    assert account.local is not None
    config: dict[str, Any] = {
        "account": str(account),
        "display_name": account.local,
        "sip": {"uri": f"sip:{account.local}@{account.domain}", "authorization_user": account.local,
                "websocket": websocket, "domain": account.domain},
        "iceServers": [],
        "turn": None,
    }
    try:
        credentials = issue(settings.turn, str(account), now, min(PHONE_TTL, settings.turn.ttl))
    except NoTurnSecret:
        stun = [uri for uri in settings.turn.uris if uri.startswith(("stun:", "stuns:"))]
        config["iceServers"] = [{"urls": stun}] if stun else []
        return config
    config["iceServers"] = credentials.ice_servers()
    # Refresh at four fifths of the lifetime, so calls never start with expired credentials.
    config["turn"] = {"ttl": credentials.ttl, "expires": credentials.expires,
                      "refresh": max(30, credentials.ttl * 4 // 5)}
    return config


class PhoneSession(Resource):
    """``POST /phone/session``: account and password in, the phone's configuration out."""

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

    def render(self, request: Request) -> bytes | int:
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return _json(request, 405, {"error": "log in with POST"})
        return self.render_POST(request)

    def render_POST(self, request: Request) -> bytes | int:
        host = request.getClientAddress().host
        if not request.isSecure() and not is_loopback(host):
            return _json(request, 403, {"error": "use HTTPS: passwords are not accepted in clear"})
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            return _json(request, 415, {"error": "send the login as application/json"})
        address = address_key(host)
        now = self.clock.seconds()
        wait = self.gate.address_wait(address, now)
        if wait is not None:
            return _json(request, 429, throttled(request, wait))
        assert request.content is not None
        body = request.content.read(MAX_BODY + 1)
        try:
            login = json.loads(body.decode("utf-8")) if len(body) <= MAX_BODY else None
        except (UnicodeDecodeError, ValueError):
            login = None
        user = login.get("user") if isinstance(login, dict) else None
        password = login.get("password") if isinstance(login, dict) else None
        if not isinstance(user, str) or not isinstance(password, str) or not user or len(user) > 1023:
            return _json(request, 400, {"error": 'expected {"user": ..., "password": ...} '
                                                 f"in at most {MAX_BODY} bytes"})
        account = account_of(user.strip(), self.settings.server.domain)
        if account is None:
            self.gate.failed(address, None, host, "not an account of this server")
            return _json(request, 401, {"error": "wrong account or password"})
        wait = self.gate.account_wait(account, now)
        if wait is not None:
            return _json(request, 429, throttled(request, wait))
        self._check(request, account, password, address, host)
        return NOT_DONE_YET

    def _check(self, request: Request, account: JID, password: str, address: str, host: str) -> None:
        def ok(reply: Reply) -> None:
            host_header = request.getHeader(b"host")
            url = websocket_url(self.settings, host_header.decode("latin-1") if host_header else None,
                                request.isSecure())
            config = phone_config(self.settings, account, self.clock.seconds(), url)
            log.info("Web phone login for {account} from {host}", account=str(account), host=host)
            reply.send(_json(request, 200, config))

        def wrong(reply: Reply) -> None:
            reply.send(_json(request, 401, {"error": "wrong account or password"}))

        def error(reply: Reply, failure: Failure) -> None:
            log.failure("Web phone login for {account}: the directory could not be read",
                        failure, account=str(account))
            reply.send(_json(request, 503, {"error": "the account directory is unavailable"}))

        self.gate.verify(request, account, password, address, host, ok, wrong, error)

    def _report(self, account: str, host: str, reason: str, delay: float) -> None:
        """Log a failed login (the gate has counted it), and the wait it earned if any."""
        log.info("Web phone: failed login for {account} from {host} ({reason})",
                 account=account, host=host, reason=reason)
        if delay > 0:
            log.info("Web phone: further attempts from {host} refused for {delay:.0f} s",
                     host=host, delay=delay)


def guest_throttles() -> tuple[FailureThrottle, FailureThrottle]:
    """Guest sessions per address (3 at once, then waits of 30 s doubling up to 10 min, forgiven
    over hours) and for everyone together (60 at once, forgiven within minutes): each costs TURN
    relay capacity, which is what click-to-call lets strangers use.  A session counts as a
    failure would (``FailureThrottle`` semantics: the third earns the first wait)."""
    return (FailureThrottle(free_failures=2, base_delay=30.0, max_delay=600.0, half_life=3600.0),
            FailureThrottle(free_failures=59, base_delay=1.0, max_delay=60.0, half_life=120.0))


class GuestSession(Resource):
    """``/phone/guest``: click-to-call for people without an account (``[web] click_to_call``).

    ``GET`` says whether it is offered and what it calls; ``POST`` (JSON, like the login) answers
    a configuration for an anonymous caller (RFC 3323's ``anonymous.invalid`` identity, no
    registration) with short-lived TURN credentials, rate-limited per address and overall.
    """

    isLeaf = True

    def __init__(self, settings: Settings, clock: Any) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.addresses, self.everyone = guest_throttles()

    def render_GET(self, request: Request) -> bytes:
        target = self.settings.web.click_to_call or None
        return _json(request, 200, {"enabled": target is not None, "target": target})

    def render_POST(self, request: Request) -> bytes:
        target = self.settings.web.click_to_call
        if not target:
            return _json(request, 404, {"error": "this server offers no click-to-call"})
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if content_type != b"application/json":
            return _json(request, 415, {"error": "send the request as application/json"})
        host = request.getClientAddress().host
        address = address_key(host)
        now = self.clock.seconds()
        wait = max(self.addresses.retry_after(address, now), self.everyone.retry_after("guests", now))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            request.setHeader(b"retry-after", str(seconds).encode("ascii"))
            return _json(request, 429, {"error": f"too many guest calls; try again in {seconds} s"})
        self.addresses.failure(address, now)  # every guest session counts, as a failure would
        self.everyone.failure("guests", now)
        host_header = request.getHeader(b"host")
        url = websocket_url(self.settings, host_header.decode("latin-1") if host_header else None,
                            request.isSecure())
        config = guest_config(self.settings, now, url)
        log.info("Web phone: guest session from {host} to call {target}", host=host, target=target)
        return _json(request, 200, config)


def guest_config(settings: Settings, now: float, websocket: str | None) -> dict[str, Any]:
    """A click-to-call caller's configuration: no account, no registration, one target."""
    config: dict[str, Any] = {
        "account": None,
        "guest": True,
        "target": settings.web.click_to_call,
        "display_name": "Guest",
        "sip": {"uri": GUEST_IDENTITY, "authorization_user": None, "websocket": websocket,
                "domain": settings.server.domain},
        "iceServers": [],
        "turn": None,
    }
    name = f"guest-{secrets.token_hex(6)}"
    try:
        credentials = issue(settings.turn, name, now, min(GUEST_TTL, settings.turn.ttl))
    except NoTurnSecret:
        stun = [uri for uri in settings.turn.uris if uri.startswith(("stun:", "stuns:"))]
        config["iceServers"] = [{"urls": stun}] if stun else []
        return config
    config["iceServers"] = credentials.ice_servers()
    config["turn"] = {"ttl": credentials.ttl, "expires": credentials.expires, "refresh": None}
    return config


class JsSipScript(Resource):
    """``/phone/jssip.js``: JsSIP for the browser, read or bundled once, revalidated by ETag."""

    isLeaf = True

    def __init__(self, source: Path | None) -> None:
        super().__init__()
        self.source = source if source is not None else CHECKOUT_JSSIP
        self._script: bytes | None = None
        self._etag = b""

    def load(self) -> bytes:
        """The script; BundleError (with what to install) when JsSIP is not there."""
        if self._script is None:
            if self.source.is_file():
                try:
                    script = self.source.read_bytes()
                except OSError as e:
                    raise BundleError(f"cannot read {self.source}: {e.strerror}") from None
            else:
                made = bundle(self.source.name, self.source.parent, "JsSIP")
                if made.missing:
                    log.info("JsSIP bundle: unresolved require() names {names}", names=", ".join(made.missing))
                script = made.script.encode("utf-8")
            self._script = script
            self._etag = b'"' + hashlib.sha256(script).hexdigest()[:32].encode("ascii") + b'"'
        return self._script

    def render_GET(self, request: Request) -> bytes:
        try:
            script = self.load()
        except BundleError as e:
            log.warn("/phone/jssip.js: {problem}", problem=str(e))
            request.setResponseCode(503)
            _secure_headers(request, "text/javascript; charset=utf-8")
            request.setHeader(b"cache-control", b"no-store")
            return b"console.error('JsSIP is not installed on this server; see its log');\n"
        _secure_headers(request, "text/javascript; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"etag", self._etag)
        if request.getHeader(b"if-none-match") == self._etag:
            request.setResponseCode(304)
            return b""
        return script


class StaticFile(Resource):
    """One of the page's own files, read at start (they are small and never change at run time)."""

    isLeaf = True

    def __init__(self, path: Path, content_type: str) -> None:
        super().__init__()
        self.body = path.read_bytes()
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        _secure_headers(request, self.content_type)
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-frame-options", b"DENY")
        return self.body


class PhoneResource(Resource):
    """``/phone`` redirects to ``/phone/``, the page; its files, JsSIP and the login below it."""

    def __init__(self, settings: Settings, directory: Any, clock: Any) -> None:
        super().__init__()
        for name, (filename, content_type) in PAGES.items():
            self.putChild(name, StaticFile(STATIC / filename, content_type))
        self.putChild(b"jssip.js", EncodingResourceWrapper(JsSipScript(settings.web.jssip), [GzipEncoderFactory()]))
        self.session = PhoneSession(settings, directory, clock)
        self.putChild(b"session", self.session)
        self.guest = GuestSession(settings, clock)
        self.putChild(b"guest", self.guest)

    def render_GET(self, request: Request) -> bytes:
        return redirectTo(b"phone/", request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        return notFound()

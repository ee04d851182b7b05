# -*- test-case-name: tests.unit.test_sip_digest -*-
"""SIP digest authentication (RFC 3261 §22, RFC 2617, RFC 8760) against stored HA1 values.

The server challenges with MD5 first (many phones read only the first challenge), then SHA-256,
both with ``qop="auth"``.  Nonces are stateless: a timestamp and a random salt under an HMAC of
the server key and the realm, so any node holding the key can check them and they expire by
themselves.  What must be remembered is bounded: the nonce-counts already used (replay
protection) and the failure throttle.

Throttling: a wrong answer is counted against the source address and against the account.
Once either has earned a delay, requests are refused with ``403`` and ``Retry-After`` *without
checking the credentials*, so neither serial nor parallel guessing advances and refusing costs
nothing.  The 401 for the failure that earned the delay is itself held back by that delay (at
most ``MAX_ANSWER_DELAY``), so a serial guesser that waits for answers is slowed without ever
seeing a 403.  Addresses an account recently logged in from keep working while the account is
blocked, so a guesser elsewhere cannot lock a user's own phones out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

from unirtc.sip.message import SipRequest, SipResponse, make_response
from unirtc.sip.uri import TOKEN, SipParseError, SipURI, parse_uri, scan_quoted
from unirtc.throttle import FailureThrottle, address_key
from unirtc.xmpp.jid import InvalidJID, normalize_localpart

Address = tuple[str, int]

HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}
OFFERED = ("MD5", "SHA-256")  # the order of the challenges: MD5 first (RFC 8760 §2.4 allows it)
MAX_CREDENTIALS = 8192
MAX_PARAMS = 32
MAX_ANSWER_DELAY = 10.0
CLOCK_SKEW = 5.0
_NONCE_LENGTH = 43  # base64url of 8 (milliseconds) + 8 (salt) + 16 (HMAC) bytes, unpadded
_HEX = re.compile(r"[0-9a-fA-F]+")
_LWS = " \t"


class DigestParseError(SipParseError):
    """An Authorization or Proxy-Authorization header that cannot be read (answered 400)."""


class Clock(Protocol):
    def seconds(self) -> float: ...
    def callLater(self, delay: float, f: Callable[..., Any], *a: Any, **kw: Any) -> Any: ...


# -- pure helpers: header syntax and the digest computation --------------------------------


@dataclass(frozen=True)
class Credentials:
    """One credentials value: the scheme and its auth-params (names lowercased, values unquoted)."""

    scheme: str
    params: dict[str, str]

    def get(self, name: str) -> str | None:
        return self.params.get(name)


def parse_credentials(value: str) -> Credentials:
    """Parse ``Digest name=value, name="quoted", ...`` (RFC 3261 §25.1); other schemes unparsed.

    Raises :class:`DigestParseError` for anything malformed, oversized or duplicated.
    """
    if len(value) > MAX_CREDENTIALS:
        raise DigestParseError("Authorization header too long")
    text = value.strip(_LWS)
    match = TOKEN.match(text)
    if match is None:
        raise DigestParseError("Bad authorization scheme")
    scheme, position = match.group(), match.end()
    if scheme.lower() != "digest":
        return Credentials(scheme, {})
    if position < len(text) and text[position] not in _LWS:
        raise DigestParseError("Bad authorization scheme")
    params: dict[str, str] = {}
    try:
        _parse_params(text, position, params)
    except DigestParseError:
        raise
    except SipParseError as error:  # from scan_quoted: unterminated or control characters
        raise DigestParseError(f"Bad authorization header: {error.reason}") from None
    return Credentials("Digest", params)


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in _LWS:
        position += 1
    return position


def _parse_params(text: str, position: int, params: dict[str, str]) -> None:
    while True:
        position = _skip(text, position)
        while position < len(text) and text[position] == ",":  # tolerate empty list elements
            position = _skip(text, position + 1)
        if position >= len(text):
            break
        name = TOKEN.match(text, position)
        if name is None:
            raise DigestParseError("Bad authorization parameter name")
        position = _skip(text, name.end())
        if position >= len(text) or text[position] != "=":
            raise DigestParseError(f"Authorization parameter {name.group()[:32]} without a value")
        position = _skip(text, position + 1)
        if position < len(text) and text[position] == '"':
            value, position = scan_quoted(text, position)
        else:
            token = TOKEN.match(text, position)
            if token is None:
                raise DigestParseError("Bad authorization parameter value")
            value, position = token.group(), token.end()
        key = name.group().lower()
        if key in params:
            raise DigestParseError(f"Duplicate authorization parameter {key[:32]}")
        if len(params) >= MAX_PARAMS:
            raise DigestParseError("Too many authorization parameters")
        params[key] = value
        position = _skip(text, position)
        if position < len(text) and text[position] != ",":
            raise DigestParseError("Missing comma between authorization parameters")


def _h(algorithm: str, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.new(HASHES[algorithm], data).hexdigest()


def compute_response(
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    *,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 2617 §3.2.2.1 (and its -sess and auth-int variants)."""
    base = algorithm.upper().removesuffix("-SESS")
    if base not in HASHES:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(base, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _h(base, f"{method}:{uri}:{_h(base, body)}")
    else:
        ha2 = _h(base, f"{method}:{uri}")
    if qop is None:
        return _h(base, f"{ha1}:{nonce}:{ha2}")
    return _h(base, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def domain_map(settings: Any) -> Callable[[str], str | None]:
    """SIP domain -> account domain: every ``[sip] domains`` name maps onto ``[server] domain``."""
    account_domain = settings.server.domain
    served = frozenset(d.lower() for d in (*settings.sip.domains, account_domain))

    def realm_for(host: str) -> str | None:
        return account_domain if host.lower().rstrip(".") in served else None

    return realm_for


# -- stateless nonces and nonce-count replay protection ------------------------------------


class NonceState(Enum):
    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"  # not ours: forged, another key, another realm, or from the future


class Nonces:
    """Issue and check ``base64url(milliseconds, salt, HMAC(key, milliseconds:salt:realm))``."""

    def __init__(self, secret: bytes, ttl: float = 300.0) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce key must be at least 16 bytes")
        self._secret = secret
        self.ttl = ttl

    def _mac(self, payload: bytes, realm: str) -> bytes:
        message = b"unirtc sip nonce:" + payload + b":" + realm.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()[:16]

    def make(self, realm: str, now: float) -> str:
        payload = struct.pack(">Q", max(0, int(now * 1000))) + secrets.token_bytes(8)
        raw = payload + self._mac(payload, realm)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def check(self, nonce: str, realm: str, now: float) -> tuple[NonceState, float]:
        """The nonce's state and issue time (0 when it is not ours)."""
        if len(nonce) != _NONCE_LENGTH:
            return NonceState.INVALID, 0.0
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except ValueError:
            return NonceState.INVALID, 0.0
        payload, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(payload, realm)):
            return NonceState.INVALID, 0.0
        issued = struct.unpack(">Q", payload[:8])[0] / 1000
        if issued > now + CLOCK_SKEW:
            return NonceState.INVALID, 0.0
        if now - issued > self.ttl:
            return NonceState.EXPIRED, issued
        return NonceState.VALID, issued


class NonceCounts:
    """The nonce-counts seen per nonce: a 64-wide sliding window, as IPsec anti-replay does.

    Requests sent in parallel under one nonce may arrive out of order, so a count below the
    highest is still accepted once if it is inside the window.  At most ``max_nonces`` are
    remembered; when a live one must be forgotten, every nonce issued no later than it and not
    remembered is refused from then on (the client simply gets a stale challenge).
    """

    WINDOW = 64

    def __init__(self, ttl: float, max_nonces: int = 100_000) -> None:
        self.ttl = ttl
        self.max_nonces = max_nonces
        self._seen: OrderedDict[str, list[float | int]] = OrderedDict()  # issued, highest, bits
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, nonce: str, issued: float, nc: int, now: float) -> bool:
        """Record ``nc`` for ``nonce``; False if it was used before (a replay) or is too old."""
        if not 0 < nc <= 0xFFFFFFFF:
            return False
        entry = self._seen.get(nonce)
        if entry is None:
            if issued <= self._floor:
                return False
            self._seen[nonce] = [issued, nc, 1]
            self._prune(now)
            return True
        _, highest, bits = entry
        if nc > highest:
            entry[1], entry[2] = nc, ((int(bits) << (nc - int(highest))) | 1) & (2**self.WINDOW - 1)
            return True
        offset = int(highest) - nc
        if offset >= self.WINDOW or int(bits) >> offset & 1:
            return False
        entry[2] = int(bits) | 1 << offset
        return True

    def _prune(self, now: float) -> None:
        while self._seen:
            nonce, entry = next(iter(self._seen.items()))
            if now - entry[0] > self.ttl:
                del self._seen[nonce]
            elif len(self._seen) > self.max_nonces:
                del self._seen[nonce]
                self._floor = max(self._floor, float(entry[0]))
            else:
                break


# -- the authenticator -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuthResult:
    """The outcome of :meth:`DigestAuthenticator.verify`.

    ``account`` is set when the credentials are valid.  Otherwise ``status`` (400 or 403, with
    ``reason`` and, when throttled, ``retry_after``) says a fresh challenge would not help, and
    ``stale`` says the password was right but the nonce was expired or reused.
    """

    account: tuple[str, str] | None
    stale: bool = False
    status: int | None = None
    reason: str | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class _Attempt:
    credentials: Credentials
    username: str
    realm: str
    algorithm: str
    account: tuple[str, str] | None
    address: str
    nonce_state: NonceState
    issued: float
    nc: int
    method: str


def _rejected(reason: str) -> AuthResult:
    return AuthResult(None, status=400, reason=reason)


class DigestAuthenticator:
    """Challenges and verifies REGISTER (401) and requests through the proxy (407).

    :param directory: anything with ``credentials(localpart, domain) -> Deferred[Credentials|None]``
    :param secret: the server key (``unirtc.serverkey.load_or_create``)
    :param clock: an ``IReactorTime`` (the reactor, or ``task.Clock`` in tests)
    :param realm_for: SIP domain -> account domain (the realm), None when not served
    """

    def __init__(
        self,
        directory: Any,
        secret: bytes,
        clock: Clock,
        realm_for: Callable[[str], str | None],
        nonce_ttl: float = 300.0,
        *,
        address_throttle: FailureThrottle | None = None,
        account_throttle: FailureThrottle | None = None,
        max_known_addresses: int = 100_000,
    ) -> None:
        self.directory = directory
        self.clock = clock
        self.realm_for = realm_for
        self.nonces = Nonces(secret, nonce_ttl)
        self.counts = NonceCounts(nonce_ttl)
        # (not ``or``: an empty FailureThrottle has a length of 0, so it is false)
        if address_throttle is None:
            address_throttle = FailureThrottle(free_failures=20)
        if account_throttle is None:
            account_throttle = FailureThrottle(free_failures=10)
        self.address_throttle = address_throttle
        self.account_throttle = account_throttle
        self._known: OrderedDict[tuple[tuple[str, str], str], None] = OrderedDict()
        self._max_known = max_known_addresses

    # challenges

    def challenge_headers(self, realm: str, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values: one per algorithm, MD5 first."""
        nonce = self.nonces.make(realm, self.clock.seconds())
        extra = ", stale=true" if stale else ""
        return [f'Digest realm="{realm}", nonce="{nonce}", algorithm={algorithm}, '
                f'qop="auth"{extra}' for algorithm in OFFERED]

    def realm_of(self, request: SipRequest, proxy: bool = False) -> str | None:
        """The realm to challenge in: the To domain for REGISTER, the From domain for the proxy."""
        candidates = [(request.from_ if proxy else request.to).uri, request.uri]
        for uri in candidates:
            if isinstance(uri, SipURI) and uri.host:
                realm = self.realm_for(uri.host)
                if realm is not None:
                    return realm
        return None

    def challenge(self, request: SipRequest, proxy: bool = False, stale: bool = False) -> SipResponse:
        """The 401 (or 407 for the proxy) carrying both challenges; 403 if no realm of ours fits."""
        realm = self.realm_of(request, proxy)
        if realm is None:
            return make_response(request, 403, "Forbidden (domain not served)", _tag())
        response = make_response(request, 407 if proxy else 401, to_tag=_tag())
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.challenge_headers(realm, stale):
            response.headers.add(header, value)
        return response

    def respond(self, request: SipRequest, result: AuthResult, proxy: bool = False) -> SipResponse:
        """The final response for a result without an account: 400, 403 or a new challenge."""
        if result.status is None:
            return self.challenge(request, proxy, stale=result.stale)
        response = make_response(request, result.status, result.reason, _tag())
        if result.retry_after is not None:
            response.headers.add("Retry-After", str(result.retry_after))
        return response

    # verification

    def verify(
        self, request: SipRequest, proxy: bool = False, source: Address | None = None
    ) -> Deferred[AuthResult]:
        """Check the request's credentials for our realm; fails only if the directory fails."""
        now = self.clock.seconds()
        examined = self._examine(request, proxy, source, now)
        if isinstance(examined, AuthResult):
            return succeed(examined)
        attempt = examined
        d: Deferred[Any] = (succeed(None) if attempt.account is None
                            else self.directory.credentials(*attempt.account))
        return d.addCallback(self._decide, attempt)

    def _examine(
        self, request: SipRequest, proxy: bool, source: Address | None, now: float
    ) -> AuthResult | _Attempt:
        realm = self.realm_of(request, proxy)
        if realm is None:
            return AuthResult(None, status=403, reason="Forbidden (domain not served)")
        credentials = None
        for value in request.headers.get_all("Proxy-Authorization" if proxy else "Authorization"):
            try:
                parsed = parse_credentials(value)
            except DigestParseError as error:
                return _rejected(error.reason)
            if parsed.scheme == "Digest" and parsed.get("realm") == realm:
                credentials = parsed
                break
        if credentials is None:
            return AuthResult(None)
        missing = [name for name in ("username", "nonce", "uri", "response")
                   if not credentials.get(name)]
        if missing:
            return _rejected(f"Missing digest parameter {missing[0]}")
        algorithm = (credentials.get("algorithm") or "MD5").upper()
        qop = credentials.get("qop")
        if algorithm not in OFFERED or (qop is not None and qop.lower() != "auth"):
            return AuthResult(None)  # not what we offered: challenge again, nothing to count
        if qop is None:
            return _rejected("Digest qop is required")
        nc_text, cnonce = credentials.get("nc") or "", credentials.get("cnonce")
        if not cnonce or not (0 < len(nc_text) <= 8 and _HEX.fullmatch(nc_text)):
            return _rejected("Bad or missing digest nc or cnonce")
        if not _HEX.fullmatch(credentials.params["response"]):
            return _rejected("Bad digest response")
        if not _same_uri(credentials.params["uri"], request.uri):
            return _rejected("Digest uri does not match the Request-URI")
        address = address_key(source[0] if source else _via_source(request))
        username = credentials.params["username"]
        account = self._account_for(username, realm)
        blocked = self._blocked(account, address, now)
        if blocked is not None:
            return blocked
        state, issued = self.nonces.check(credentials.params["nonce"], realm, now)
        return _Attempt(credentials, username, realm, algorithm, account, address, state, issued,
                        int(nc_text, 16), request.method)

    def _account_for(self, username: str, realm: str) -> tuple[str, str] | None:
        """``joe`` or ``joe@<a domain mapping to realm>`` -> (localpart, realm)."""
        local, at, domain = username.rpartition("@")
        if not at:
            local = username
        elif self.realm_for(domain) != realm:
            return None
        try:
            return normalize_localpart(local), realm
        except InvalidJID:
            return None

    def _blocked(self, account: tuple[str, str] | None, address: str, now: float) -> AuthResult | None:
        wait = self.address_throttle.retry_after(address, now)
        if account is not None and (account, address) not in self._known:
            wait = max(wait, self.account_throttle.retry_after(account, now))
        if wait <= 0:
            return None
        return AuthResult(None, status=403, reason="Forbidden (too many failed attempts)",
                          retry_after=max(1, math.ceil(wait)))

    def _decide(self, stored: Any, attempt: _Attempt) -> AuthResult | Deferred[AuthResult]:
        now = self.clock.seconds()
        # Checked again: while the account was being read, a parallel attempt may have failed.
        blocked = self._blocked(attempt.account, attempt.address, now)
        if blocked is not None:
            return blocked
        secret = None if stored is None else stored.digest.get((attempt.username, attempt.algorithm))
        params = attempt.credentials.params
        if secret is None or secret.realm != attempt.realm or not hmac.compare_digest(
            params["response"].lower(),
            compute_response(attempt.algorithm, secret.ha1, params["nonce"], attempt.method,
                             params["uri"], qop="auth", nc=params["nc"], cnonce=params["cnonce"]),
        ):
            return self._failed(attempt, now)
        if stored.disabled:
            return AuthResult(None, status=403, reason="Forbidden (account disabled)")
        if attempt.nonce_state is not NonceState.VALID or not self.counts.accept(
            params["nonce"], attempt.issued, attempt.nc, now
        ):
            return AuthResult(None, stale=True)
        account = (stored.localpart, stored.domain)
        self.account_throttle.reset(account)
        self._known.pop((account, attempt.address), None)
        self._known[(account, attempt.address)] = None
        while len(self._known) > self._max_known:
            self._known.popitem(last=False)
        return AuthResult(account)

    def _failed(self, attempt: _Attempt, now: float) -> AuthResult | Deferred[AuthResult]:
        delay = self.address_throttle.failure(attempt.address, now)
        if attempt.account is not None:
            delay = max(delay, self.account_throttle.failure(attempt.account, now))
        result = AuthResult(None)
        if delay <= 0:
            return result
        return deferLater(self.clock, min(delay, MAX_ANSWER_DELAY), lambda: result)  # type: ignore[arg-type]


def _same_uri(digest_uri: str, request_uri: SipURI) -> bool:
    """RFC 2617 §3.2.2.5: the uri parameter names the Request-URI (as written or equal to it)."""
    if digest_uri == str(request_uri):
        return True
    try:
        return parse_uri(digest_uri) == request_uri
    except SipParseError:
        return False


def _via_source(request: SipRequest) -> str:
    """The sender's address from the top Via: ``received`` if the transport added it, else host."""
    via = request.via[0]
    return (via.received or via.host).strip("[]")


def _tag() -> str:
    return secrets.token_hex(8)

"""Shared helpers for the digest and registrar tests: a fake directory and a digest client."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from twisted.internet.defer import Deferred, succeed

from unirtc.directory.secrets import derive_digest
from unirtc.directory.store import Credentials
from unirtc.sip.digest import compute_response, parse_credentials
from unirtc.sip.message import SipRequest, SipResponse, parse

DOMAIN = "falcot.com"
PASSWORD = "correct horse"
NOW = 1_800_000_000.0  # the test clock starts at a realistic Unix time
HASHLIB = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def settings(domains: tuple[str, ...] = ("falcot.com", "sip.falcot.com")) -> SimpleNamespace:
    """The two config values the SIP modules read."""
    return SimpleNamespace(server=SimpleNamespace(domain=DOMAIN), sip=SimpleNamespace(domains=domains))


class FakeDirectory:
    """Accounts with real derived HA1 values; counts reads."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], Credentials] = {}
        self.reads = 0

    def add(self, localpart: str, password: str = PASSWORD, disabled: bool = False) -> None:
        digest = {(d.username, d.algorithm): d for d in derive_digest(localpart, DOMAIN, password)}
        self.accounts[(localpart, DOMAIN)] = Credentials(localpart, DOMAIN, disabled, {}, digest)

    def credentials(self, localpart: str, domain: str) -> Deferred[Credentials | None]:
        self.reads += 1
        return succeed(self.accounts.get((localpart, domain)))


def request(
    method: str = "REGISTER",
    uri: str = "sip:falcot.com",
    to: str = "<sip:joe@falcot.com>",
    from_: str = "<sip:joe@falcot.com>;tag=f1",
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    extra: list[str] | None = None,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1;rport",
) -> SipRequest:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        *(extra or []),
        "Content-Length: 0",
    ]
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def challenges(response: SipResponse, proxy: bool = False) -> list[dict[str, str]]:
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    return [parse_credentials(v).params for v in response.headers.get_all(header)]


def authorization(
    challenge: dict[str, str],
    req: SipRequest,
    username: str = "joe",
    password: str = PASSWORD,
    nc: str = "00000001",
    cnonce: str = "c0ffee",
    uri: str | None = None,
    algorithm: str | None = None,
    realm: str | None = None,
    omit_algorithm: bool = False,
) -> str:
    """An Authorization value answering ``challenge`` as a phone would."""
    algorithm = algorithm or challenge["algorithm"]
    realm = realm or challenge["realm"]
    uri = uri if uri is not None else str(req.uri)
    ha1 = hashlib.new(HASHLIB[algorithm], f"{username}:{realm}:{password}".encode()).hexdigest()
    response = compute_response(algorithm, ha1, challenge["nonce"], req.method, uri,
                                qop="auth", nc=nc, cnonce=cnonce)
    algorithm_param = "" if omit_algorithm else f", algorithm={algorithm}"
    return (f'Digest username="{username}", realm="{realm}", nonce="{challenge["nonce"]}", '
            f'uri="{uri}", response="{response}"{algorithm_param}, qop=auth, nc={nc}, '
            f'cnonce="{cnonce}"')


def with_header(req: SipRequest, name: str, value: str) -> SipRequest:
    """A copy of ``req`` with one more header (requests are mutable; tests keep originals)."""
    headers = req.headers.copy()
    headers.add(name, value)
    return SipRequest(req.method, req.uri, req.version, headers, req.body)

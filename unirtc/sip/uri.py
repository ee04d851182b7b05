"""SIP URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1), sans-I/O.

This is the bottom of the SIP syntax layer: it owns the one error type
(:class:`SipParseError`) and the lexical helpers (tokens, quoted strings,
parameter lists, comma lists) that ``headers.py`` and ``message.py`` build on.
URI components are stored unescaped, so ``sip:%61lice@x`` and ``sip:alice@x``
carry the same ``user`` and compare equal as RFC 3261 §19.1.4 requires.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from unirtc.sip.headers import Headers

__all__ = [
    "AbsoluteURI",
    "NameAddr",
    "SipParseError",
    "SipURI",
    "URI",
    "parse_hostport",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "split_commas",
]


class SipParseError(ValueError):
    """A SIP message, header or URI that cannot be accepted.

    ``status`` is the response a server should answer with (400 unless a more
    precise code applies: 413, 414, 416, 505) and ``reason`` names the problem
    and doubles as the reason phrase. ``headers`` is filled by ``message.parse``
    when the bad message is a request whose header section could be read, so
    that ``message.error_response`` can still answer it.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.reason = reason
        self.status = status
        self.headers: Headers | None = None


TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_LWS = " \t"
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
_HNAME = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})+")
_HVALUE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*")
_TELNUM = re.compile(rf"(?:[0-9A-Fa-f*#+\-.()pPwW]|{_ESC})+")
_OPAQUE = re.compile(rf"(?:[{_UNRESERVED};/?:@&=+$,]|{_ESC})+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_GEN_VALUE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+|\[?[0-9A-Fa-f:.]+\]?")
_PORT = re.compile(r"[0-9]{1,5}")
# What ipaddress.IPv4Address accepts (four decimal octets, no leading zeros), checked first
# because building the address object cost more than the rest of host parsing.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_SPECIALS = {sep: re.compile(f'["<>{re.escape(sep)}]') for sep in ",;"}

# Characters left unescaped when writing each URI component (RFC 3261 §25.1).
_SAFE_USER = "-_.!~*'()&=+$,;?/"
_SAFE_PASSWORD = "-_.!~*'()&=+$,"
_SAFE_PARAM = "-_.!~*'()[]/:&+$"
_SAFE_HEADER = "-_.!~*'()[]/?:+$"
_SAFE_TEL = "-_.!~*'()+#"

# uri-parameters that must be present in both URIs for them to match (§19.1.4).
_MUST_MATCH = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


def scan_quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted-string at ``text[start]``; return its unescaped content and end index."""
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                break
            out.append(text[i + 1])
            i += 2
            continue
        if (char < " " and char != "\t") or char == "\x7f":
            raise SipParseError("control character in quoted string")
        out.append(char)
        i += 1
    raise SipParseError("unterminated quoted string")


def quote_string(text: str) -> str:
    """Write ``text`` as a quoted-string, escaping what qdtext may not hold."""
    escaped = "".join(
        "\\" + c if c in '"\\' or (c < " " and c != "\t") or c == "\x7f" else c for c in text
    )
    return f'"{escaped}"'


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` wherever it is not inside a quoted-string or <...>.

    Jumps from one special character to the next (a per-character loop was the REGISTER path's
    hottest function); text with neither quotes nor ``<`` is a plain split.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    special = _SPECIALS[sep]
    parts: list[str] = []
    start = i = 0
    angle = False
    while (match := special.search(text, i)) is not None:
        i = match.start()
        char = text[i]
        if char == '"':
            i = scan_quoted(text, i)[1]
            continue
        if char == "<":
            if angle:
                raise SipParseError("nested <")
            angle = True
        elif char == ">":
            angle = False
        elif not angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if angle:
        raise SipParseError("unterminated <")
    parts.append(text[start:])
    return parts


def split_commas(text: str) -> list[str]:
    """Split a comma-separated header value, respecting quoted strings and <URI>s."""
    parts = [part.strip(_LWS) for part in _split_outside_quotes(text, ",")]
    if not all(parts):
        raise SipParseError("empty list element")
    return parts


def _find_outside_quotes(text: str, char: str) -> int:
    if '"' not in text:
        return text.find(char)
    i = 0
    while i < len(text):
        if text[i] == '"':
            i = scan_quoted(text, i)[1]
            continue
        if text[i] == char:
            return i
        i += 1
    return -1


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``*( SEMI generic-param )``; names are lowercased, values kept as written."""
    params: dict[str, str | None] = {}
    text = text.strip(_LWS)
    if not text:
        return params
    if text[0] != ";":
        raise SipParseError("unexpected text before parameters")
    for chunk in _split_outside_quotes(text[1:], ";"):
        name, equals, value = chunk.partition("=")
        name = name.strip(_LWS)
        if not TOKEN.fullmatch(name):
            raise SipParseError("bad parameter name")
        if equals:
            value = value.strip(_LWS)
            if value.startswith('"'):
                if scan_quoted(value, 0)[1] != len(value):
                    raise SipParseError("text after quoted parameter value")
            elif not _GEN_VALUE.fullmatch(value):
                raise SipParseError("bad parameter value")
        key = name.lower()
        if key in params:
            raise SipParseError(f"duplicate parameter {key}")
        params[key] = value if equals else None
    return params


def _format_params(params: Mapping[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Parse ``host [":" port]``; IPv6 references keep their brackets."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SipParseError("bad IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise SipParseError("bad host")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_ = text.partition(":")
        port_text = port_text_ if colon else None
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError("bad host")
        last = host.rstrip(".").rsplit(".", 1)[-1]
        if last.isdigit() and not _IPV4.fullmatch(host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise SipParseError("bad IPv4 address") from None
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise SipParseError("bad port")
    return host, int(port_text)


def _host_key(host: str) -> str:
    if host.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            pass
    return host.lower()


@dataclass(frozen=True, kw_only=True, eq=False)
class SipURI:
    """A sip:, sips: or tel: URI. Components are unescaped; ``str()`` re-escapes.

    For tel: URIs the telephone-subscriber is in ``user`` and ``host`` is empty.
    Parameter names are lowercased (they are case-insensitive). Equality follows
    RFC 3261 §19.1.4, except that an escaped reserved character is treated as
    equal to the character itself.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Mapping[str, str | None] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str | None:
        return self.params.get("transport")

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    def __str__(self) -> str:
        if self.scheme == "tel":
            text = f"tel:{_escape(self.user or '', _SAFE_TEL)}"
        else:
            text = f"{self.scheme}:"
            if self.user is not None:
                text += _escape(self.user, _SAFE_USER)
                if self.password is not None:
                    text += ":" + _escape(self.password, _SAFE_PASSWORD)
                text += "@"
            text += self.host
            if self.port is not None:
                text += f":{self.port}"
        for name, value in self.params.items():
            text += ";" + _escape(name, _SAFE_PARAM)
            if value is not None:
                text += "=" + _escape(value, _SAFE_PARAM)
        if self.headers:
            text += "?" + "&".join(
                f"{_escape(k, _SAFE_HEADER)}={_escape(v, _SAFE_HEADER)}"
                for k, v in self.headers.items()
            )
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipURI):
            return NotImplemented
        if (self.scheme, self.user, self.password, self.port) != (
            other.scheme,
            other.user,
            other.password,
            other.port,
        ) or _host_key(self.host) != _host_key(other.host):
            return False
        for name in self.params.keys() | other.params.keys():
            if name not in self.params or name not in other.params:
                if name in _MUST_MATCH:
                    return False
                continue
            mine, theirs = self.params[name], other.params[name]
            if (mine is None) != (theirs is None) or (mine or "").lower() != (theirs or "").lower():
                return False
        return {k.lower(): v for k, v in self.headers.items()} == {
            k.lower(): v for k, v in other.headers.items()
        }

    def __hash__(self) -> int:
        return hash((self.scheme, self.user, self.password, _host_key(self.host), self.port))


@dataclass(frozen=True)
class AbsoluteURI:
    """A URI of a scheme SIP does not interpret (http:, isbn:, urn:...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI = SipURI | AbsoluteURI


def _parse_uri_params(chunks: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for chunk in chunks:
        name, equals, value = chunk.partition("=")
        if not _PARAMCHARS.fullmatch(name) or (equals and not _PARAMCHARS.fullmatch(value)):
            raise SipParseError("bad URI parameter")
        key = _unescape(name).lower()
        if key in params:
            raise SipParseError(f"duplicate URI parameter {key}")
        params[key] = _unescape(value) if equals else None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for chunk in text.split("&"):
        name, equals, value = chunk.partition("=")
        if not equals or not _HNAME.fullmatch(name) or not _HVALUE.fullmatch(value):
            raise SipParseError("bad URI header")
        key = _unescape(name)
        if key.lower() in (k.lower() for k in headers):
            raise SipParseError("duplicate URI header")
        headers[key] = _unescape(value)
    return headers


def _parse_sip(scheme: str, rest: str) -> SipURI:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_text, colon, password_text = userinfo.partition(":")
        if not _USER.fullmatch(user_text) or not _PASSWORD.fullmatch(password_text):
            raise SipParseError("bad URI userinfo")
        user = _unescape(user_text)
        password = _unescape(password_text) if colon else None
    rest, question, headers_text = rest.partition("?")
    hostport, *chunks = rest.split(";")
    host, port = parse_hostport(hostport)
    return SipURI(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_uri_params(chunks),
        headers=_parse_uri_headers(headers_text) if question else {},
    )


def _parse_tel(rest: str) -> SipURI:
    number, *chunks = rest.split(";")
    if not _TELNUM.fullmatch(number):
        raise SipParseError("bad telephone number")
    return SipURI(scheme="tel", user=_unescape(number), params=_parse_uri_params(chunks))


def parse_uri(text: str) -> URI:
    """Parse a URI: sip/sips/tel into :class:`SipURI`, anything else into :class:`AbsoluteURI`."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        raise SipParseError("bad URI scheme")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    if not _OPAQUE.fullmatch(rest):
        raise SipParseError("bad URI")
    return AbsoluteURI(scheme, rest)


@dataclass
class NameAddr:
    """A name-addr or addr-spec with header parameters (From, To, Contact, Route...).

    ``display_name`` is unquoted and unescaped (None when absent). ``params`` are
    the header parameters (after the URI), not the URI's own parameters.
    """

    uri: URI
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        name = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{name}<{self.uri}>{_format_params(self.params)}"


def _parse_angle(display: str | None, text: str) -> NameAddr:
    end = text.find(">")
    if end < 0:
        raise SipParseError("missing >")
    return NameAddr(parse_uri(text[1:end]), display, parse_params(text[end + 1 :]))


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``[display-name] <URI> *(;param)`` or ``addr-spec *(;param)``."""
    text = text.strip(_LWS)
    if text.startswith('"'):
        display, end = scan_quoted(text, 0)
        rest = text[end:].lstrip(_LWS)
        if not rest.startswith("<"):
            raise SipParseError("display name without <URI>")
        return _parse_angle(display, rest)
    angle = _find_outside_quotes(text, "<")
    if angle >= 0:
        words = text[:angle].split()
        if not all(TOKEN.fullmatch(word) for word in words):
            raise SipParseError("bad display name")
        return _parse_angle(" ".join(words) or None, text[angle:])
    uri_text, semi, params_text = text.partition(";")
    uri_text = uri_text.rstrip(_LWS)
    if "?" in uri_text:
        raise SipParseError("URI with headers must be enclosed in <>")
    return NameAddr(parse_uri(uri_text), None, parse_params(semi + params_text))

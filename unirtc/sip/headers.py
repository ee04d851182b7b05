"""SIP header fields: an ordered multi-map of raw values, parsed lazily (RFC 3261 §7.3, §20).

Header values are kept as received (unfolded), so a proxy forwards what it was
given; typed views (:class:`Via`, :class:`CSeq`, :class:`NameAddr` lists) are
parsed on first access and cached until that header is changed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from unirtc.sip.uri import (
    TOKEN,
    NameAddr,
    SipParseError,
    parse_hostport,
    parse_name_addr,
    parse_params,
    split_commas,
)

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Headers",
    "Via",
    "canonical_name",
]

T = TypeVar("T")

COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = """Accept Accept-Encoding Accept-Language Alert-Info Allow Authentication-Info
Authorization Call-ID Call-Info Contact Content-Disposition Content-Encoding Content-Language
Content-Length Content-Type CSeq Date Error-Info Expires From In-Reply-To Max-Forwards
Min-Expires MIME-Version Organization Priority Proxy-Authenticate Proxy-Authorization
Proxy-Require Record-Route Reply-To Require Retry-After Route Server Subject Supported
Timestamp To Unsupported User-Agent Via Warning WWW-Authenticate Path Service-Route RAck RSeq
Min-SE Session-Expires Event Allow-Events Subscription-State Refer-To Referred-By Replaces
Reason Privacy P-Asserted-Identity P-Preferred-Identity SIP-ETag SIP-If-Match Identity
Identity-Info Accept-Contact Reject-Contact Request-Disposition Flow-Timer Max-Breadth"""
_CANONICAL = {name.lower(): name for name in _KNOWN.split()}
_CANONICAL.update({short: _CANONICAL[full.lower()] for short, full in COMPACT_FORMS.items()})

_CALL_ID = re.compile(
    r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+(?:@[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+)?"
)
_CSEQ = re.compile(r"([0-9]{1,10})[ \t]+(\S+)")
_DIGITS = re.compile(r"[0-9]{1,10}")
_VIA = re.compile(
    r"([^ \t/]+)[ \t]*/[ \t]*([^ \t/]+)[ \t]*/[ \t]*([^ \t/;]+)[ \t]+([^;]+?)[ \t]*(;.*)?",
    re.DOTALL,
)
_MAX_UINT32 = 2**32 - 1


def _fold(name: str) -> str:
    lower = name.lower()
    return COMPACT_FORMS.get(lower, lower).lower()


# The usual spellings folded once at import: every header access folds its name, and doing it
# afresh each time was a visible share of a REGISTER's cost.
_KEYS = {spelling: _fold(spelling) for name in (*_CANONICAL, *_CANONICAL.values())
         for spelling in (name, name.lower(), name.upper())}


def _key(name: str) -> str:
    key = _KEYS.get(name)
    return _fold(name) if key is None else key


def canonical_name(name: str) -> str:
    """The long form in its usual spelling (``i`` and ``CALL-ID`` give ``Call-ID``)."""
    return _CANONICAL.get(name.lower(), name)


class Headers:
    """Ordered, case-insensitive multi-map of raw values; compact names fold into long ones."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Build from fields the message parser has already checked."""
        headers = cls()
        headers._items = [(_key(n), canonical_name(n), v) for n, v in items]
        return headers

    def get(self, name: str, default: str | None = None) -> str | None:
        """The raw value of the first field called ``name``."""
        key = _key(name)
        return next((v for k, _, v in self._items if k == key), default)

    def get_all(self, name: str) -> list[str]:
        """The raw values of every field called ``name``, in order."""
        key = _key(name)
        return [v for k, _, v in self._items if k == key]

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated element of every ``name`` field (for list-valued headers)."""
        return [part for value in self.get_all(name) for part in split_commas(value)]

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k == _key(name) for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def copy(self) -> Headers:
        return Headers._trusted((name, value) for name, value in self)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a field, or insert it before the first field of that name if ``first``."""
        if not TOKEN.fullmatch(name):
            raise ValueError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"line break in {name} header value")
        key = _key(name)
        self._cache.pop(key, None)
        entry = (key, canonical_name(name), value.strip(" \t"))
        if first:
            index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), 0)
            self._items.insert(index, entry)
        else:
            self._items.append(entry)

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field with one, where the first one was."""
        key = _key(name)
        index = next((i for i, (k, _, _) in enumerate(self._items) if k == key), None)
        self.remove(name)
        self.add(name, value)
        if index is not None:
            self._items.insert(index, self._items.pop())

    def remove(self, name: str) -> int:
        """Delete every ``name`` field; return how many there were."""
        key = _key(name)
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        self._cache.pop(key, None)
        return before - len(self._items)

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first list element of ``name`` (a proxy's top Via or Route)."""
        key = _key(name)
        for index, (k, display, value) in enumerate(self._items):
            if k == key:
                head, *tail = split_commas(value)
                self._cache.pop(key, None)
                if tail:
                    self._items[index] = (k, display, ", ".join(tail))
                else:
                    del self._items[index]
                return head
        return None

    def parsed(self, name: str, parser: Callable[[list[str]], T]) -> T:
        """``parser(self.get_all(name))``, cached until a ``name`` field changes."""
        key = _key(name)
        if key not in self._cache:
            self._cache[key] = parser(self.get_all(name))
        return self._cache[key]  # type: ignore[no-any-return]


def _bad(name: str, error: SipParseError) -> SipParseError:
    return SipParseError(f"Bad {name} header: {error.reason}")


def _single(values: list[str], name: str) -> str | None:
    if len(values) > 1:
        raise SipParseError(f"Multiple {name} headers")
    return values[0] if values else None


def _required(values: list[str], name: str) -> str:
    value = _single(values, name)
    if value is None:
        raise SipParseError(f"Missing {name} header")
    return value


@dataclass
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        """True when rport is present, with or without a value (RFC 3581)."""
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in; None when absent or a bare flag."""
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{self.protocol}/{self.transport} {self.sent_by}{params}"


def _check_via_params(params: dict[str, str | None]) -> None:
    for name in ("branch", "received", "maddr", "ttl"):
        if name in params and params[name] is None:
            raise SipParseError(f"{name} without a value")
    received = params.get("received")
    if received is not None:
        try:
            ipaddress.ip_address(received.strip("[]"))
        except ValueError:
            raise SipParseError("received is not an IP address") from None
    rport = params.get("rport")
    if rport is not None and not (_DIGITS.fullmatch(rport) and 0 < int(rport) <= 65535):
        raise SipParseError("bad rport")
    ttl = params.get("ttl")
    if ttl is not None and not (_DIGITS.fullmatch(ttl) and int(ttl) <= 255):
        raise SipParseError("bad ttl")
    maddr = params.get("maddr")
    if maddr is not None:
        parse_hostport(maddr)


def parse_via(text: str) -> Via:
    """Parse one via-parm (LWS is allowed around the slashes, colon, semicolons and equals)."""
    match = _VIA.fullmatch(text.strip(" \t"))
    if match is None:
        raise SipParseError("bad sent-protocol or sent-by")
    name, version, transport, sent_by, params_text = match.groups()
    if not all(TOKEN.fullmatch(part) for part in (name, version, transport)):
        raise SipParseError("bad sent-protocol")
    host, port = parse_hostport(re.sub(r"[ \t]*:[ \t]*", ":", sent_by))
    params = parse_params(params_text or "")
    _check_via_params(params)
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


def parse_via_list(values: list[str]) -> list[Via]:
    try:
        return [parse_via(part) for value in values for part in split_commas(value)]
    except SipParseError as error:
        raise _bad("Via", error) from error


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(values: list[str]) -> CSeq:
    value = _required(values, "CSeq")
    match = _CSEQ.fullmatch(value)
    if match is None or not TOKEN.fullmatch(match[2]) or int(match[1]) > _MAX_UINT32:
        raise SipParseError("Bad CSeq header")
    return CSeq(int(match[1]), match[2])


def parse_call_id(values: list[str]) -> str:
    value = _required(values, "Call-ID")
    if not _CALL_ID.fullmatch(value):
        raise SipParseError("Bad Call-ID header")
    return value


def _integer(name: str, limit: int) -> Callable[[list[str]], int | None]:
    def parse(values: list[str]) -> int | None:
        value = _single(values, name)
        if value is None:
            return None
        if not _DIGITS.fullmatch(value) or int(value) > limit:
            raise SipParseError(f"Bad {name} header")
        return int(value)

    return parse


parse_max_forwards = _integer("Max-Forwards", 255)
parse_expires = _integer("Expires", _MAX_UINT32)
parse_content_length = _integer("Content-Length", _MAX_UINT32)


def _name_addr(name: str) -> Callable[[list[str]], NameAddr]:
    def parse(values: list[str]) -> NameAddr:
        value = _required(values, name)
        try:
            return parse_name_addr(value)
        except SipParseError as error:
            raise _bad(name, error) from error

    return parse


parse_from = _name_addr("From")
parse_to = _name_addr("To")


def _name_addr_list(name: str) -> Callable[[list[str]], list[NameAddr]]:
    def parse(values: list[str]) -> list[NameAddr]:
        try:
            return [parse_name_addr(part) for value in values for part in split_commas(value)]
        except SipParseError as error:
            raise _bad(name, error) from error

    return parse


parse_route = _name_addr_list("Route")
parse_record_route = _name_addr_list("Record-Route")
_parse_contact_list = _name_addr_list("Contact")


def parse_contact(values: list[str]) -> list[NameAddr] | Literal["*"]:
    """Contact values, or ``"*"`` for the REGISTER wildcard (which must stand alone)."""
    if [value.strip() for value in values] == ["*"]:
        return "*"
    if any(part == "*" for value in values for part in _split_loosely(value)):
        raise SipParseError("Bad Contact header: * mixed with other contacts")
    return _parse_contact_list(values)


def _split_loosely(value: str) -> list[str]:
    try:
        return split_commas(value)
    except SipParseError:
        return []

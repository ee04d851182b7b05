"""XMPP addresses (JIDs) as RFC 7622 defines them: split, prepare, compare.

A JID is only ever built through preparation, so two JIDs that name the same
entity compare (and hash) equal: ``JID.parse("Joe@Falcot.COM") ==
JID.parse("joe@falcot.com")``. Each part is enforced by the rule RFC 7622
gives it:

- localpart: PRECIS ``UsernameCaseMapped`` (RFC 8265 §3.3, via the
  ``precis_i18n`` package), then the XMPP-specific forbidden characters
  ``"&'/:<>@`` (RFC 7622 §3.3.1). Case mapping is RFC 8265's
  ``toLowerCase``, not RFC 7613's case folding, so ``ς`` stays ``ς`` and
  ``ß`` stays ``ß`` (RFC 8265 §3.3; its Appendix A lists the change).
- domainpart: one trailing dot stripped; an IPv4 address or a bracketed IPv6
  literal kept as an address in canonical text form; otherwise every label
  is validated as an IDNA2008 label and stored as its U-label, lowercased
  and in NFC (RFC 7622 §3.2).
- resourcepart: PRECIS ``OpaqueString`` (RFC 7622 §3.4): case and spaces
  are preserved, non-ASCII spaces become U+0020, the result is NFC.

Every part is 1 to 1023 octets of UTF-8. The limit is checked on the part as
received, which bounds the work hostile input can cause, and again after
preparation, which is where RFC 7622 §3.1 applies it.

Why the ``idna`` package for the domainpart rather than the stdlib: Python's
``encodings.idna`` codec implements IDNA2003 (RFC 3490 nameprep), which
RFC 7622 replaced. It maps ``ß`` to ``ss`` and ``ς`` to ``σ``, accepts
symbols that IDNA2008 disallows, and lacks the CONTEXTJ/CONTEXTO and Bidi
rules, so our domains would compare differently from our federation peers'.
``idna`` implements IDNA2008 with the UTS #46 mapping (case folding, width
mapping, full-width dots), and it is already installed because Twisted
depends on it through ``hyperlink``. The stdlib ``punycode`` codec is only
used to measure a label's A-label length before validating it.

Errors are ``InvalidJID`` (a ``ValueError``) whose message names the part and
says exactly what is wrong, so stream and stanza errors can quote it.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import idna
from precis_i18n import get_profile
from precis_i18n.profile import Profile

MAX_PART_BYTES = 1023
MAX_LABEL_BYTES = 63
# Prepared parts remembered per function. A server prepares the same few domains and its
# users' names on every stream header, bind and address; PRECIS and IDNA cost 10-30 us each.
# Only successes are kept (a raised InvalidJID is not cached), and the cache is bounded.
PREPARED_CACHE_SIZE = 4096

_LOCALPART_PROFILE = get_profile("UsernameCaseMapped")
_RESOURCE_PROFILE = get_profile("OpaqueString")

# RFC 7622 §3.3.1: allowed by the IdentifierClass, forbidden in a localpart.
_LOCALPART_FORBIDDEN = "\"&'/:<>@"

# RFC 6874 ZoneID = 1*( unreserved / pct-encoded ); we keep only unreserved.
_ZONE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
_IPV4_CHARS = frozenset("0123456789.")


class InvalidJID(ValueError):
    """A string or part that is not a valid RFC 7622 address."""


@lru_cache(maxsize=PREPARED_CACHE_SIZE)
def normalize_localpart(s: str) -> str:
    """Return the canonical localpart of ``s`` or raise InvalidJID."""
    _check_raw("localpart", s)
    prepared = _precis("localpart", _LOCALPART_PROFILE, s)
    for char in prepared:
        if char in _LOCALPART_FORBIDDEN:
            raise InvalidJID(f"localpart contains forbidden character {char!r}")
    _check_length("localpart", prepared)
    return prepared


@lru_cache(maxsize=PREPARED_CACHE_SIZE)
def normalize_domain(s: str) -> str:
    """Return the canonical domainpart of ``s`` or raise InvalidJID."""
    _check_raw("domainpart", s)
    if s.startswith("["):
        return _ip_literal(s[:-1] if s.endswith(".") else s)
    try:
        mapped = idna.uts46_remap(s, std3_rules=True)
    except idna.IDNAError as e:
        codepoint = getattr(e, "codepoint", None)
        if isinstance(codepoint, int):
            described = _describe(chr(codepoint))
            raise InvalidJID(f"domainpart contains disallowed character {described}") from None
        raise InvalidJID(f"domainpart is not a valid domain name ({e})") from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise InvalidJID("domainpart is empty")
    _check_length("domainpart", mapped)
    if _IPV4_CHARS.issuperset(mapped):
        return _ipv4(mapped)
    domain = ".".join(_label(label) for label in mapped.split("."))
    _check_length("domainpart", domain)
    return domain


@lru_cache(maxsize=PREPARED_CACHE_SIZE)
def normalize_resource(s: str) -> str:
    """Return the canonical resourcepart of ``s`` or raise InvalidJID."""
    _check_raw("resourcepart", s)
    prepared = _precis("resourcepart", _RESOURCE_PROFILE, s)
    _check_length("resourcepart", prepared)
    return prepared


@dataclass(frozen=True)
class JID:
    """A prepared XMPP address; ``None`` marks an absent local or resource part.

    The constructor prepares its arguments, so every instance is valid and
    canonical and equality is RFC 7622 equivalence. Use ``parse`` for a
    string and ``make`` (or the constructor) for separate parts.
    """

    local: str | None
    domain: str
    resource: str | None = None

    def __post_init__(self) -> None:
        local = None if self.local is None else normalize_localpart(self.local)
        domain = normalize_domain(self.domain)
        resource = None if self.resource is None else normalize_resource(self.resource)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "resource", resource)

    @classmethod
    def parse(cls, text: str) -> JID:
        """Split ``text`` per RFC 7622 §3.1 and prepare each part.

        The split happens on the raw string, before preparation, because
        preparation may turn other characters (U+FF20 FULLWIDTH COMMERCIAL AT)
        into separators: the resource starts after the first '/', and the
        localpart ends at the first '@' before it.
        """
        if not isinstance(text, str):
            raise TypeError(f"JID.parse() needs str, not {type(text).__name__}")
        if len(text) > 3 * MAX_PART_BYTES + 2:
            raise InvalidJID(f"JID longer than {3 * MAX_PART_BYTES + 2} characters")
        head, slash, resource = text.partition("/")
        local, at, domain = head.partition("@")
        if not at:
            return cls(None, head, resource if slash else None)
        return cls(local, domain, resource if slash else None)

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build a JID from separate parts; ``None`` means the part is absent."""
        return cls(local, domain, resource)

    @classmethod
    def _trusted(cls, local: str | None, domain: str, resource: str | None) -> JID:
        """Build a JID from parts already prepared, skipping preparation."""
        jid = object.__new__(cls)
        object.__setattr__(jid, "local", local)
        object.__setattr__(jid, "domain", domain)
        object.__setattr__(jid, "resource", resource)
        return jid

    @property
    def bare(self) -> JID:
        """This address without its resourcepart."""
        if self.resource is None:
            return self
        return self._trusted(self.local, self.domain, None)

    @property
    def is_bare(self) -> bool:
        """True if there is no resourcepart."""
        return self.resource is None

    @property
    def full(self) -> str:
        """The canonical string form, resourcepart included."""
        text = self.domain if self.local is None else f"{self.local}@{self.domain}"
        return text if self.resource is None else f"{text}/{self.resource}"

    def __str__(self) -> str:
        return self.full


def _check_raw(part: str, s: str) -> None:
    """Reject non-strings, empty parts, lone surrogates and oversized input."""
    if not isinstance(s, str):
        raise TypeError(f"{part} must be str, not {type(s).__name__}")
    if not s:
        raise InvalidJID(f"{part} is empty")
    if len(s) > MAX_PART_BYTES:
        raise InvalidJID(f"{part} longer than {MAX_PART_BYTES} bytes")
    try:
        encoded = s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidJID(f"{part} contains a lone surrogate at index {e.start}") from None
    if len(encoded) > MAX_PART_BYTES:
        raise InvalidJID(f"{part} longer than {MAX_PART_BYTES} bytes")


def _check_length(part: str, prepared: str) -> None:
    if len(prepared.encode("utf-8")) > MAX_PART_BYTES:
        raise InvalidJID(f"{part} longer than {MAX_PART_BYTES} bytes")


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X} {name}" if name else f"U+{ord(char):04X}"


def _precis(part: str, profile: Profile, s: str) -> str:
    """Enforce a PRECIS profile, turning precis_i18n's error into InvalidJID."""
    try:
        return profile.enforce(s)
    except UnicodeEncodeError as e:
        reason = str(e.reason).removeprefix("DISALLOWED/")
        if reason == "empty":
            raise InvalidJID(f"{part} is empty") from None
        if e.end - e.start == 1 and reason not in ("bidi_rule", "not_idempotent"):
            char = e.object[e.start]
            raise InvalidJID(
                f"{part} contains disallowed character {_describe(char)}"
                f" (PRECIS {e.encoding}: {reason})"
            ) from None
        raise InvalidJID(f"{part} is not valid under PRECIS {e.encoding} ({reason})") from None


def _label(label: str) -> str:
    """Validate one UTS #46-mapped label and return its IDNA2008 U-label."""
    if not label:
        raise InvalidJID("domainpart contains an empty label")
    if label.isascii():
        alabel_length = len(label)
    else:
        alabel_length = len("xn--") + len(label.encode("punycode"))
    if alabel_length > MAX_LABEL_BYTES:
        raise InvalidJID(f"domainpart label longer than {MAX_LABEL_BYTES} bytes")
    try:
        return idna.ulabel(label)
    except idna.IDNAError as e:
        raise InvalidJID(f"domainpart label {label!r} is not a valid IDNA2008 label: {e}") from None


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InvalidJID(f"domainpart {text!r} is not a valid IPv4 address") from None


def _ip_literal(text: str) -> str:
    """Canonicalise ``[IPv6]`` (RFC 3986 IP-literal, optional RFC 6874 zone)."""
    if not text.endswith("]"):
        raise InvalidJID("domainpart IP literal is missing its closing ']'")
    inner = text[1:-1]
    if not inner:
        raise InvalidJID("domainpart IP literal is empty")
    address, percent, zone = inner.partition("%")
    if percent and not (zone and _ZONE_ID_CHARS.issuperset(zone)):
        raise InvalidJID("domainpart IPv6 zone identifier is empty or has invalid characters")
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        raise InvalidJID(f"domainpart {text!r} is not a valid IPv6 literal") from None
    return f"[{parsed.compressed}%{zone}]" if percent else f"[{parsed.compressed}]"

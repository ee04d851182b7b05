"""TURN credentials: REST-API (shared secret) credentials and the long-term STUN key.

The REST form (draft-uberti-behave-turn-rest-00 §2.2) is what coturn's ``use-auth-secret`` /
``static-auth-secret`` accepts, so unirtc can mint credentials for a coturn relay without sharing a
user database: username ``"<expiry>:<user>"`` (expiry in Unix seconds), password
``base64(HMAC-SHA1(secret, username))``.  unirtc mints and accepts one order only, expiry first.

The long-term key (RFC 8489 §9.2.2, RFC 5389 §15.4) is ``MD5(username ":" realm ":" password)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import stringprep
import unicodedata
from collections.abc import Iterable

import precis_i18n

_TIMESTAMP = re.compile(r"[0-9]{1,20}")


def _as_bytes(secret: bytes | bytearray | str) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _rest_password(secret: bytes | str, username: str) -> str:
    digest = hmac.new(_as_bytes(secret), username.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def rest_credentials(secret: bytes | str, user: str, ttl: int, now: float) -> tuple[str, str]:
    """Mint (username, password) valid until ``int(now) + ttl``, as coturn's REST API expects."""
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    if not user:
        raise ValueError("user must not be empty")
    username = f"{int(now) + ttl}:{user}"
    return username, _rest_password(secret, username)


def check_rest_credentials(
    secret: bytes | str | Iterable[bytes | str],
    username: str,
    password: str,
    now: float,
    *,
    max_ttl: int | None = None,
) -> bool:
    """Whether REST credentials are authentic and unexpired at ``now``.

    ``secret`` may be a list of secrets to try in turn, as coturn does during a rotation.  Like
    coturn, an expiry equal to ``now`` is still valid and a bare ``"<expiry>"`` username is
    accepted; unlike coturn, the reversed ``"<user>:<expiry>"`` order is not.  With ``max_ttl``,
    an expiry further than that in the future is refused (coturn has no such bound).
    """
    if not isinstance(username, str) or not isinstance(password, str):
        return False
    timestamp = username.split(":", 1)[0]
    if not _TIMESTAMP.fullmatch(timestamp):
        return False
    expiry = int(timestamp)
    if expiry < now or (max_ttl is not None and expiry > now + max_ttl):
        return False
    secrets = [secret] if isinstance(secret, (bytes, bytearray, str)) else list(secret)
    offered = password.encode("utf-8", "surrogatepass")
    matched = False
    for candidate in secrets:
        expected = _rest_password(candidate, username).encode("ascii")
        matched |= hmac.compare_digest(expected, offered)
    return matched


def _saslprep(text: str) -> str:
    """RFC 4013 SASLprep (stored-string profile), which RFC 5389 and the RFC 5769 vectors use."""
    mapped = "".join(
        "" if stringprep.in_table_b1(c) else " " if stringprep.in_table_c12(c) else c for c in text
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_a1,
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    for c in prepared:
        if any(table(c) for table in prohibited):
            raise ValueError(f"SASLprep prohibits U+{ord(c):04X}")
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError("SASLprep forbids mixing right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("SASLprep requires right-to-left text to start and end right-to-left")
    return prepared


def prepare_password(password: str) -> str:
    """OpaqueString (RFC 8265, as RFC 8489 §9.2.2 asks), else SASLprep (RFC 5389) if it refuses.

    Passwords the directory stores are OpaqueString-valid, so the key equals the stored MD5 HA1;
    the SASLprep fallback only serves RFC 5389 peers with passwords OpaqueString disallows (the
    RFC 5769 §2.4 sample's soft hyphen, for one).
    """
    try:
        return precis_i18n.get_profile("OpaqueString").enforce(password)
    except UnicodeEncodeError:
        return _saslprep(password)


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The 16-byte long-term credential key that signs MESSAGE-INTEGRITY (RFC 8489 §9.2.2)."""
    material = f"{username}:{realm}:{prepare_password(password)}"
    return hashlib.md5(material.encode("utf-8")).digest()

"""Derive what each protocol needs to verify a password, so the password itself is never stored.

One password yields, per account:
- SCRAM (RFC 5802 / RFC 7677): salt, iteration count, StoredKey and ServerKey for SHA-1 and SHA-256;
  PLAIN is verified by deriving the same StoredKey from the offered password.
- SIP digest (RFC 3261 §22.4, RFC 2617, RFC 8760): HA1 = H(username:realm:password) for MD5 and
  SHA-256, for the digest usernames ``user`` and ``user@domain`` (some phones send the full address).
  The MD5 HA1 for ``user`` is also the RFC 5389 long-term STUN/TURN key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

SCRAM_HASHES = ("sha1", "sha256")
DIGEST_ALGORITHMS = {"MD5": "md5", "SHA-256": "sha256"}
MIN_ITERATIONS = 4096
DEFAULT_ITERATIONS = 4096


@dataclass(frozen=True)
class ScramSecret:
    """The server side of SCRAM for one hash: enough to verify a client, not to impersonate it."""

    hash_name: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True)
class DigestSecret:
    """One SIP digest HA1 for a (digest username, realm, algorithm) triple."""

    username: str
    realm: str
    algorithm: str
    ha1: str


def salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) with Hi = PBKDF2-HMAC (RFC 5802 §2.2)."""
    return hashlib.pbkdf2_hmac(hash_name, password.encode("utf-8"), salt, iterations)


def scram_keys(hash_name: str, salted: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (ClientKey, StoredKey, ServerKey) from a SaltedPassword (RFC 5802 §3)."""
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    return client_key, stored_key, server_key


def derive_scram(
    hash_name: str,
    password: str,
    salt: bytes | None = None,
    iterations: int = DEFAULT_ITERATIONS,
) -> ScramSecret:
    """Derive the stored SCRAM secret for ``password`` (already normalised by the caller)."""
    if hash_name not in SCRAM_HASHES:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}")
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"SCRAM iteration count must be at least {MIN_ITERATIONS}")
    salt = os.urandom(16) if salt is None else salt
    _, stored_key, server_key = scram_keys(hash_name, salted_password(hash_name, password, salt, iterations))
    return ScramSecret(hash_name, salt, iterations, stored_key, server_key)


def verify_scram_password(secret: ScramSecret, password: str) -> bool:
    """Check a plaintext password (SASL PLAIN over TLS, HTTP Basic) against a stored SCRAM secret."""
    salted = salted_password(secret.hash_name, password, secret.salt, secret.iterations)
    _, stored_key, _ = scram_keys(secret.hash_name, salted)
    return hmac.compare_digest(stored_key, secret.stored_key)


def digest_ha1(algorithm: str, username: str, realm: str, password: str) -> str:
    """HA1 = H(username ":" realm ":" password), hex, for an RFC 8760 algorithm name."""
    try:
        hash_name = DIGEST_ALGORITHMS[algorithm.upper()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None
    return hashlib.new(hash_name, f"{username}:{realm}:{password}".encode("utf-8")).hexdigest()


def derive_digest(localpart: str, domain: str, password: str) -> list[DigestSecret]:
    """HA1 values for ``user`` and ``user@domain``, realm = the account's domain, MD5 and SHA-256."""
    return [
        DigestSecret(username, domain, algorithm, digest_ha1(algorithm, username, domain, password))
        for username in (localpart, f"{localpart}@{domain}")
        for algorithm in DIGEST_ALGORITHMS
    ]


def prepare_password(password: str) -> str:
    """Normalise a password with the PRECIS OpaqueString profile (RFC 8265 §4.2).

    SCRAM (RFC 5802 §2.2, via RFC 7677) and STUN long-term credentials want the password
    prepared the same way on both ends; OpaqueString is the successor of SASLprep they name.
    """
    import precis_i18n

    try:
        return precis_i18n.get_profile("OpaqueString").enforce(password)
    except UnicodeEncodeError as e:
        raise ValueError(f"password rejected by the PRECIS OpaqueString profile ({e.reason})") from None

# -*- test-case-name: tests.unit.test_sasl -*-
"""Server-side SASL for XMPP (RFC 6120 §6) as pure state machines: SCRAM-SHA-256/-1 and their -PLUS
variants (RFC 5802, RFC 7677; channel bindings tls-exporter RFC 9266 and tls-server-end-point
RFC 5929; XEP-0474 ``h=`` downgrade protection) and PLAIN over TLS (RFC 4616).

The directory lookup is asynchronous, so each mechanism stops where it needs the stored secret and
the caller fetches it in between; nothing here does I/O or keeps global state::

    scram = ScramServer("sha256", plus, cb_types, binding, fake_salt_key=key)
    username = scram.start(client_first)        # str, or Failure
    reply = scram.first(secret_or_None)          # Challenge(server-first), or Failure
    result = scram.final(client_final)           # Success(v=...), or Failure

    plain = PlainServer()
    request = plain.start(initial)               # PlainRequest(authzid, username, password)
    result = plain.finish(secret_or_None, request.password)

Payloads are the decoded SASL bytes; ``decode_payload``/``encode_payload`` do RFC 6120's base64
and "=" conventions. When ``<auth/>`` carries no initial response, send ``Challenge(b"")`` and pass
the client's next response to ``start``. Hostile input never raises: it yields a ``Failure`` whose
``text`` is the RFC 5802 server-error value where one exists. Once failed, every step fails.
Usernames are returned as sent (SCRAM ``=2C``/``=3D`` decoded); the caller prepares them as JID
localparts and checks authzids (``check_authzid``); PLAIN prepares passwords as stored ones are.
``SCRAM_MECHANISMS`` maps an offered name to ScramServer's ``(hash_name, plus)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from unirtc.directory.secrets import (
    DEFAULT_ITERATIONS,
    SCRAM_HASHES,
    ScramSecret,
    prepare_password,
    verify_scram_password,
)

# RFC 6120 §6.5
CONDITIONS = frozenset({
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
})
SCRAM_MECHANISMS: dict[str, tuple[str, bool]] = {
    "SCRAM-SHA-256-PLUS": ("sha256", True),
    "SCRAM-SHA-1-PLUS": ("sha1", True),
    "SCRAM-SHA-256": ("sha256", False),
    "SCRAM-SHA-1": ("sha1", False),
}
MAX_SCRAM_MESSAGE = 4096
MAX_PLAIN_FIELD = 255  # RFC 4616 §2: each field at most 255 octets
FAKE_SALT_LENGTH = 16

_CB_NAME = re.compile(r"[A-Za-z0-9.\-]+")
_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # RFC 5802 §7 printable: no ','
_ATTR = re.compile(r"[A-Za-z]=[^,]+", re.S)


def mechanisms(tls: bool, cb_types: Sequence[str]) -> list[str]:
    """Mechanisms to offer, best first; PLAIN and -PLUS only on TLS (DESIGN: no PLAIN in clear)."""
    offered = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] if tls and cb_types else []
    offered += ["SCRAM-SHA-256", "SCRAM-SHA-1"]
    return offered + ["PLAIN"] if tls else offered


def check_mechanism(name: str, tls: bool, cb_types: Sequence[str]) -> Failure | None:
    """Refuse a mechanism the client picked that this stream did not offer (RFC 6120 §6.4.2)."""
    if name == "PLAIN" and not tls:
        return Failure("encryption-required")
    if name not in mechanisms(tls, cb_types):
        return Failure("invalid-mechanism")
    return None


def decode_payload(text: str) -> bytes | None | Failure:
    """RFC 6120 §6.4.2: empty element text is "no data" (None), "=" is zero-length data."""
    if text == "":
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error):
        return Failure("incorrect-encoding")


def encode_payload(data: bytes | None) -> str:
    """The inverse of ``decode_payload``, for challenge and success elements."""
    if data is None:
        return ""
    return base64.b64encode(data).decode("ascii") if data else "="


def check_authzid(
    success: Success, own_jid: str, prep: Callable[[str], str] = str
) -> Success | Failure:
    """Accept an authzid only if it names the authenticated account itself (RFC 6120 §6.3.8).

    ``prep`` normalises the authzid as a bare JID and raises ValueError if it is not one.
    """
    if success.authzid is None:
        return success
    try:
        wanted = prep(success.authzid)
    except ValueError:
        return Failure("invalid-authzid")
    return success if wanted == own_jid else Failure("invalid-authzid")


def ssdp_hash(hash_name: str, advertised: Sequence[str], cb_types: Sequence[str]) -> str:
    """XEP-0474 h=: H(sorted mechanisms joined by 0x1E [0x1F sorted cb types joined by 0x1E])."""
    text = "\x1e".join(sorted(advertised))
    if cb_types:
        text += "\x1f" + "\x1e".join(sorted(cb_types))
    return _b64(hashlib.new(hash_name, text.encode("utf-8")).digest())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error):
        return None


def _message(data: bytes, limit: int) -> str | None:
    """A client message as text, or None if empty, oversized, not UTF-8 or holding NUL."""
    if not data or len(data) > limit or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _saslname(value: str) -> str | None:
    """Undo RFC 5802 §5.1 escaping (=2C → ',', =3D → '='); any other '=' is malformed."""
    if not value:
        return None
    pieces = value.split("=")
    out = [pieces[0]]
    for piece in pieces[1:]:
        escape = {"2C": ",", "3D": "="}.get(piece[:2])
        if escape is None:
            return None
        out.append(escape + piece[2:])
    return "".join(out)


@dataclass
class Challenge:
    """Send ``<challenge/>`` with this data and feed the client's response to the next step."""

    data: bytes


@dataclass
class Success:
    """Send ``<success/>`` with ``data`` (None means no additional data); the stream restarts."""

    data: bytes | None
    username: str
    authzid: str | None


@dataclass
class Failure:
    """Send ``<failure/>`` with ``condition`` (RFC 6120 §6.5) and optional ``text``."""

    condition: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"not an RFC 6120 SASL condition: {self.condition!r}")


class _State(IntEnum):
    START = 0
    AWAIT_SECRET = 1
    AWAIT_FINAL = 2
    DONE = 3


class ScramServer:
    """One SCRAM exchange (RFC 5802 §5) for one hash, with or without channel binding.

    ``cb_types_offered`` are the channel-binding types advertised on this stream (XEP-0440), empty
    when no -PLUS mechanism was offered; a client flag 'y' then means downgrade (RFC 5802 §6).
    ``channel_binding(type)`` returns that binding's data for this TLS connection, or None.
    ``fake_salt_key`` keys the salts invented for unknown users, so they look like real ones and
    stay stable across attempts; keep it secret and per server. ``advertised_mechanisms``, when
    given, adds XEP-0474's ``h=`` to server-first.
    """

    def __init__(
        self,
        hash_name: str,
        plus: bool,
        cb_types_offered: Sequence[str],
        channel_binding: Callable[[str], bytes | None],
        nonce: str | None = None,
        *,
        fake_salt_key: bytes,
        fake_iterations: int = DEFAULT_ITERATIONS,
        advertised_mechanisms: Sequence[str] | None = None,
    ) -> None:
        if hash_name not in SCRAM_HASHES:
            raise ValueError(f"unsupported SCRAM hash {hash_name!r}")
        if plus and not cb_types_offered:
            raise ValueError("a -PLUS mechanism needs channel-binding types")
        if nonce is not None and not _PRINTABLE.fullmatch(nonce):
            raise ValueError("a SCRAM nonce must be printable ASCII without ','")
        self.hash_name = hash_name
        self.plus = plus
        self._cb_types = list(cb_types_offered)
        self._channel_binding = channel_binding
        self._server_nonce = nonce if nonce is not None else _b64(os.urandom(18))
        self._fake_key = fake_salt_key
        self._fake_iterations = fake_iterations
        self._advertised = advertised_mechanisms
        self._state = _State.START
        self._failure: Failure | None = None
        self._gs2_header = ""
        self._cb_data = b""
        self._username = ""
        self._authzid: str | None = None
        self._bare = ""
        self._nonce = ""
        self._server_first = ""
        self._secret: ScramSecret | None = None
        self._known = False

    @property
    def name(self) -> str:
        """The SASL mechanism name, e.g. ``SCRAM-SHA-256-PLUS``."""
        name = "SCRAM-" + self.hash_name.upper().replace("SHA", "SHA-")
        return name + "-PLUS" if self.plus else name

    def start(self, initial: bytes) -> str | Failure:
        """Parse client-first-message; return the username whose secret ``first`` needs."""
        if self._state is not _State.START:
            return self._fail("malformed-request", "unexpected-message")
        text = _message(initial, MAX_SCRAM_MESSAGE)
        if text is None:
            return self._fail("malformed-request", "invalid-encoding")
        parts = text.split(",")
        if len(parts) < 4:
            return self._fail("malformed-request", "other-error")
        flag, authz, bare = parts[0], parts[1], parts[2:]
        cb_name: str | None = None
        if flag.startswith("p="):
            cb_name = flag[2:]
            if not _CB_NAME.fullmatch(cb_name):
                return self._fail("malformed-request", "other-error")
        elif flag not in ("n", "y"):
            return self._fail("malformed-request", "other-error")
        if authz:
            self._authzid = _saslname(authz[2:]) if authz.startswith("a=") else None
            if self._authzid is None:
                return self._fail("malformed-request", "invalid-username-encoding")
        if bare[0].startswith("m="):
            return self._fail("malformed-request", "extensions-not-supported")
        username = _saslname(bare[0][2:]) if bare[0].startswith("n=") else None
        if username is None:
            return self._fail("malformed-request", "invalid-username-encoding")
        if not bare[1].startswith("r=") or not _PRINTABLE.fullmatch(bare[1][2:]):
            return self._fail("malformed-request", "other-error")
        if not all(_ATTR.fullmatch(ext) for ext in bare[2:]):
            return self._fail("malformed-request", "other-error")
        refused = self._check_binding(flag, cb_name)
        if refused is not None:
            return refused
        self._gs2_header = f"{flag},{authz},"
        self._bare = ",".join(bare)
        self._username = username
        self._nonce = bare[1][2:] + self._server_nonce
        self._state = _State.AWAIT_SECRET
        return username

    def _check_binding(self, flag: str, cb_name: str | None) -> Failure | None:
        """RFC 5802 §6 gs2-cbind-flag rules against what this stream offered."""
        if self.plus:
            if cb_name is None:
                return self._fail("malformed-request", "channel-binding-not-supported")
            data = self._channel_binding(cb_name) if cb_name in self._cb_types else None
            if data is None:
                return self._fail("not-authorized", "unsupported-channel-binding-type")
            self._cb_data = data
        elif cb_name is not None:
            # 'p' is only for the -PLUS variants
            return self._fail("malformed-request", "channel-binding-not-supported")
        elif flag == "y" and self._cb_types:
            return self._fail("not-authorized", "server-does-support-channel-binding")
        return None

    def first(self, secret: ScramSecret | None, account: str | None = None) -> Challenge | Failure:
        """Build server-first-message from the account's secret (None: unknown account).

        ``account`` is the prepared name the lookup used; it keys the fake salt, so spellings that
        prepare to the same unknown account get the same salt, as they would for a real one.
        """
        if self._state is not _State.AWAIT_SECRET:
            return self._fail("malformed-request", "unexpected-message")
        if secret is not None and secret.hash_name != self.hash_name:
            raise ValueError(f"{self.name} was given a {secret.hash_name} secret")
        self._known = secret is not None
        if secret is None:
            secret = self._fake_secret(account or self._username)
        self._secret = secret
        message = f"r={self._nonce},s={_b64(self._secret.salt)},i={self._secret.iterations}"
        if self._advertised is not None:
            message += ",h=" + ssdp_hash(self.hash_name, self._advertised, self._cb_types)
        self._server_first = message
        self._state = _State.AWAIT_FINAL
        return Challenge(message.encode("utf-8"))

    def _fake_secret(self, account: str) -> ScramSecret:
        """A stable, plausible secret for an unknown user: same salt each time, never verifiable."""
        seed = hmac.new(self._fake_key, f"{self.hash_name}\x00{account}".encode(), "sha256")
        size = hashlib.new(self.hash_name).digest_size
        salt = seed.digest()[:FAKE_SALT_LENGTH]
        stored = hmac.new(self._fake_key, b"stored\x00" + seed.digest(), self.hash_name).digest()
        server = hmac.new(self._fake_key, b"server\x00" + seed.digest(), self.hash_name).digest()
        iterations = self._fake_iterations
        return ScramSecret(self.hash_name, salt, iterations, stored[:size], server[:size])

    def final(self, client_final: bytes) -> Success | Failure:
        """Verify client-final-message (binding, nonce, proof) and answer with ``v=``."""
        if self._state is not _State.AWAIT_FINAL or self._secret is None:
            return self._fail("malformed-request", "unexpected-message")
        text = _message(client_final, MAX_SCRAM_MESSAGE)
        if text is None:
            return self._fail("malformed-request", "invalid-encoding")
        parts = text.split(",")
        if (
            len(parts) < 3
            or not parts[0].startswith("c=")
            or not parts[1].startswith("r=")
            or not parts[-1].startswith("p=")
            or not all(_ATTR.fullmatch(p) and p[0] not in "crp" for p in parts[2:-1])
        ):
            return self._fail("malformed-request", "other-error")
        binding, proof = _unb64(parts[0][2:]), _unb64(parts[-1][2:])
        digest_size = len(self._secret.stored_key)
        if binding is None or proof is None or len(proof) != digest_size:
            return self._fail("malformed-request", "invalid-encoding")
        expected = self._gs2_header.encode("utf-8") + self._cb_data
        if not hmac.compare_digest(binding, expected):
            return self._fail("not-authorized", "channel-bindings-dont-match")
        if not hmac.compare_digest(parts[1][2:].encode("utf-8"), self._nonce.encode("utf-8")):
            return self._fail("not-authorized", "other-error")
        without_proof = ",".join(parts[:-1])
        auth_message = f"{self._bare},{self._server_first},{without_proof}".encode("utf-8")
        signature = hmac.new(self._secret.stored_key, auth_message, self.hash_name).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        stored_key = hashlib.new(self.hash_name, client_key).digest()
        if not hmac.compare_digest(stored_key, self._secret.stored_key) or not self._known:
            return self._fail("not-authorized", "invalid-proof")
        server_signature = hmac.new(self._secret.server_key, auth_message, self.hash_name).digest()
        self._state = _State.DONE
        verifier = b"v=" + _b64(server_signature).encode("ascii")
        return Success(verifier, self._username, self._authzid)

    def _fail(self, condition: str, text: str) -> Failure:
        """Record the first failure; later steps repeat it instead of going on."""
        if self._failure is None:
            self._failure = Failure(condition, text)
        self._state = _State.DONE
        return self._failure


class PlainRequest(NamedTuple):
    """The three RFC 4616 fields; ``authzid`` is None when the client sent none."""

    authzid: str | None
    username: str
    password: str


class PlainServer:
    """SASL PLAIN (RFC 4616), checked against the stored SCRAM secret (only ever offered on TLS).

    ``fake_iterations`` should match the directory's iteration count, so an unknown user costs the
    same PBKDF2 work as a known one.
    """

    name = "PLAIN"

    def __init__(self, *, fake_iterations: int = DEFAULT_ITERATIONS) -> None:
        self._fake_iterations = fake_iterations
        self._state = _State.START
        self._request: PlainRequest | None = None

    def start(self, initial: bytes) -> PlainRequest | Failure:
        """Split ``[authzid] NUL authcid NUL passwd``; the caller prepares and looks up the user."""
        if self._state is not _State.START:
            return self._fail("unexpected-message")
        if not initial or len(initial) > 3 * MAX_PLAIN_FIELD + 2:
            return self._fail("invalid-encoding")
        fields = initial.split(b"\x00")
        if len(fields) != 3 or not fields[1] or not fields[2]:
            return self._fail("other-error")
        if any(len(field) > MAX_PLAIN_FIELD for field in fields):
            return self._fail("other-error")
        try:
            authzid, username, password = (field.decode("utf-8") for field in fields)
        except UnicodeDecodeError:
            return self._fail("invalid-encoding")
        self._request = PlainRequest(authzid or None, username, password)
        self._state = _State.AWAIT_SECRET
        return self._request

    def finish(self, secret: ScramSecret | None, password: str) -> Success | Failure:
        """Verify the password from ``start`` against the account's secret; None: unknown account.

        The password is prepared with the PRECIS OpaqueString profile, as stored ones are; one the
        profile rejects cannot match and is not-authorized.
        """
        if self._state is not _State.AWAIT_SECRET or self._request is None:
            return self._fail("unexpected-message")
        self._state = _State.DONE
        try:
            password = prepare_password(password)
        except ValueError:
            secret = None
        if secret is None:
            # same PBKDF2 work as a real check, against a key nothing can match
            unmatchable = ScramSecret("sha256", bytes(16), self._fake_iterations, b"", b"")
            verify_scram_password(unmatchable, password)
            ok = False
        else:
            ok = verify_scram_password(secret, password)
        if not ok:
            return Failure("not-authorized")
        return Success(None, self._request.username, self._request.authzid)

    def _fail(self, text: str) -> Failure:
        self._state = _State.DONE
        return Failure("malformed-request", text)

# -*- test-case-name: tests.unit.test_tls -*-
"""The certificate behind every unirtc TLS listener (c2s, s2s, SIP TLS, HTTPS).

It makes a self-signed certificate when the site has none (RFC 5280 profile,
with RFC 6120 §13.7.1.4 XmppAddr names). It checks an installed certificate at
startup and for ``unirtc-ctl check``, using RFC 6125 DNS-ID matching from
service_identity. It also builds the one server TLS context the listeners
share. Only files are read and written here; nothing touches the reactor.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from OpenSSL import SSL
from service_identity import CertificateError as _IdentityCertificateError
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.ssl import CertificateOptions, TLSVersion

# RFC 6120 §13.7.1.4: id-on-xmppAddr, an otherName whose value is a UTF8String.
ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")

# RSA rather than EC P-256. ECDSA is optional in TLS 1.2, and the peers we
# must reach include SIP desk phones and older XMPP clients with RSA-only
# stacks. Generating the key costs about 0.1 s, once per site.
RSA_KEY_SIZE = 2048
RSA_PUBLIC_EXPONENT = 65537
DEFAULT_DAYS = 3650

# check_certificate() puts this prefix on entries that should not stop the server.
WARNING_PREFIX = "warning: "
EXPIRY_WARNING = timedelta(days=14)

# Start validity an hour early, so peers whose clocks run a little slow accept
# a certificate we have only just made.
_BACKDATE = timedelta(hours=1)
# A PEM chain is a few KiB. Refuse to parse anything much bigger.
_MAX_PEM_SIZE = 1024 * 1024
# RFC 1123 §2.1 host name label: letters, digits, hyphens, not at either end.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_UB_COMMON_NAME = 64  # RFC 5280 Appendix A: ub-common-name
_SELF_SIGNED_OFF = "[tls] self_signed = no"


class CertificateError(Exception):
    """A certificate or key file is missing, unreadable or unusable. The message is for humans."""


@dataclass(frozen=True)
class CertificateFiles:
    """Where the PEM certificate chain (leaf first) and its private key live.

    Both may be the same path. Then the file holds the chain and the key.
    """

    certificate: Path
    key: Path


def _utc(now: datetime) -> datetime:
    """Read a naive ``now`` as UTC, so naive and aware times are never compared."""
    if now.tzinfo is None:
        return now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _a_label(domain: str) -> str:
    """Turn a domain into the ASCII form subjectAltName dNSName needs (RFC 5280 §4.2.1.6)."""
    text = domain.strip().rstrip(".").lower()
    try:
        ascii_form = text.encode("idna").decode("ascii") if not text.isascii() else text
    except UnicodeError as e:
        raise CertificateError(f"domain {domain!r} is not a valid DNS name: {e}") from None
    labels = ascii_form.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # RFC 6125 §6.4.3: a wildcard only as the whole leftmost label
    if not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise CertificateError(f"domain {domain!r} is not a valid DNS name")
    if len(ascii_form) > 253:
        raise CertificateError(f"domain {domain!r} is longer than 253 characters")
    return ascii_form


def _der_utf8_string(text: str) -> bytes:
    """DER-encode a UTF8String (tag 12), the value type of an XmppAddr."""
    data = text.encode("utf-8")
    if len(data) < 0x80:
        length = bytes([len(data)])
    else:
        octets = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return b"\x0c" + length + data


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same folder, then rename it into place.

    A crash then leaves either the old file or the new one, never half of one.
    mkstemp creates the file with mode 0600, so a key is never readable by
    others, not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _read_pem(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_PEM_SIZE + 1)
    except FileNotFoundError:
        raise CertificateError(f"{what} file {path} does not exist") from None
    except OSError as e:
        raise CertificateError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    if len(data) > _MAX_PEM_SIZE:
        raise CertificateError(f"{what} file {path} is larger than {_MAX_PEM_SIZE} bytes")
    return data


def _load_chain(path: Path) -> list[x509.Certificate]:
    """Read every certificate in a PEM file, leaf first, as listeners send them."""
    data = _read_pem(path, "certificate")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError(f"certificate file {path} contains no PEM certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CertificateError(f"certificate file {path} is not valid PEM: {e}") from None


def _load_key(path: Path) -> PrivateKeyTypes:
    data = _read_pem(path, "key")
    if b"PRIVATE KEY-----" not in data:
        raise CertificateError(f"key file {path} contains no PEM private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(f"key file {path} is encrypted; unirtc needs it plain") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertificateError(f"key file {path} is not a usable PEM private key: {e}") from None


def _key_matches(key: PrivateKeyTypes, certificate: x509.Certificate) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == certificate.public_key().public_bytes(*spki)


def _describe(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def _check_request(domains: list[str], days: int) -> None:
    """Fail before spending time on a key if the request cannot produce a certificate."""
    if not domains:
        raise CertificateError("a certificate needs at least one domain")
    if days < 1:
        raise CertificateError(f"certificate lifetime must be at least 1 day, not {days}")
    for domain in domains:
        _a_label(domain)


def _issue(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    domains: list[str],
    now: datetime,
    days: int,
) -> x509.Certificate:
    """Build the self-signed certificate for ``key``.

    The CN is the first domain. The SAN has a dNSName for every domain and an
    XmppAddr for every non-wildcard domain.
    """
    _check_request(domains, days)
    now = _utc(now)
    names: list[x509.GeneralName] = [x509.DNSName(_a_label(d)) for d in domains]
    for domain in domains:
        if not _a_label(domain).startswith("*."):
            # RFC 6120 §13.7.1.4: the domainpart in its UTF-8 form, not the A-label.
            value = _der_utf8_string(domain.strip().rstrip("."))
            names.append(x509.OtherName(ID_ON_XMPPADDR, value))
    first = _a_label(domains[0])
    attributes = []
    if len(first) <= _UB_COMMON_NAME:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, first))
    subject = x509.Name(attributes)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        # RFC 5280 §4.2.1.6: the SAN must be critical when the subject is empty.
        .add_extension(x509.SubjectAlternativeName(names), critical=not attributes)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                # TLS 1.2 RSA key transport needs keyEncipherment; EC keys never do it.
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # clientAuth too: on s2s links this server is the TLS client presenting it.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _write_pair(
    files: CertificateFiles, certificate: x509.Certificate, key_pem: bytes | None
) -> None:
    """Write the key (0600) before the certificate.

    An interrupted run then leaves only a key, and ensure_certificate can reuse it.
    """
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    if files.certificate == files.key:
        if key_pem is None:
            raise CertificateError(f"key file {files.key} must be rewritten with its certificate")
        _atomic_write(files.key, cert_pem + key_pem, 0o600)
        return
    if key_pem is not None:
        _atomic_write(files.key, key_pem, 0o600)
    _atomic_write(files.certificate, cert_pem, 0o644)


def create_self_signed(
    files: CertificateFiles, domains: list[str], now: datetime, days: int = DEFAULT_DAYS
) -> None:
    """Make a new RSA key and a self-signed certificate for ``domains``, replacing both files."""
    _check_request(domains, days)
    key = rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=RSA_KEY_SIZE)
    certificate = _issue(key, domains, now, days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_pair(files, certificate, key_pem)


def ensure_certificate(
    files: CertificateFiles, domains: list[str], self_signed: bool, now: datetime
) -> bool:
    """Make sure both files exist, making a self-signed pair if allowed.

    Return True if anything was written.

    Files that exist are never checked or replaced; that is check_certificate's
    job. If only the key exists, a certificate is issued for that key. If only
    the certificate exists, this refuses, because replacing a certificate that
    someone installed would hide their mistake.
    """
    has_certificate = files.certificate.exists()
    has_key = files.key.exists()
    if has_certificate and has_key:
        return False
    if not self_signed:
        what, path = ("key", files.key) if has_certificate else ("certificate", files.certificate)
        raise CertificateError(f"{what} file {path} does not exist and {_SELF_SIGNED_OFF}")
    if has_certificate:
        raise CertificateError(
            f"key file {files.key} does not exist but certificate file {files.certificate} does; "
            "remove the certificate to get a new self-signed pair, or install its key"
        )
    if has_key:
        key = _load_key(files.key)
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise CertificateError(f"key file {files.key} is neither an RSA nor an EC key")
        certificate = _issue(key, domains, now, DEFAULT_DAYS)
        _write_pair(files, certificate, None)
        return True
    create_self_signed(files, domains, now)
    return True


def is_warning(problem: str) -> bool:
    """True for check_certificate() entries that should be logged but not stop the server."""
    return problem.startswith(WARNING_PREFIX)


def _validity_problems(label: str, certificate: x509.Certificate, now: datetime) -> list[str]:
    not_before = certificate.not_valid_before_utc
    not_after = certificate.not_valid_after_utc
    if now < not_before:
        return [f"{label} is not valid before {not_before:%Y-%m-%d %H:%M:%S} UTC"]
    if now > not_after:
        return [f"{label} expired at {not_after:%Y-%m-%d %H:%M:%S} UTC"]
    if not_after - now <= EXPIRY_WARNING:
        days = (not_after - now).days
        at = f"{not_after:%Y-%m-%d %H:%M:%S} UTC"
        return [f"{WARNING_PREFIX}{label} expires in {days} days, at {at}"]
    return []


def _chain_problems(path: Path, chain: list[x509.Certificate]) -> list[str]:
    """Each certificate must be issued by the next one, as clients walk the chain in that order."""
    for i, (child, parent) in enumerate(zip(chain, chain[1:]), start=1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return [
                f"certificate chain in {path} is out of order or incomplete: certificate {i} "
                f"({_describe(child)}) was not issued by certificate {i + 1} ({_describe(parent)})"
            ]
    return []


def _domain_problems(path: Path, leaf: x509.Certificate, domains: list[str]) -> list[str]:
    problems = []
    for domain in domains:
        try:
            verify_certificate_hostname(leaf, _a_label(domain))
        except VerificationError:
            problems.append(f"certificate {path} does not cover domain {domain}")
        except _IdentityCertificateError as e:
            problems.append(f"certificate {path} cannot be matched to domain {domain}: {e}")
            break
        except (CertificateError, ValueError) as e:
            problems.append(f"cannot check domain {domain!r} against certificate {path}: {e}")
    return problems


def check_certificate(files: CertificateFiles, domains: list[str], now: datetime) -> list[str]:
    """List what is wrong with the installed certificate; an empty list means it is good.

    Entries that start with WARNING_PREFIX (see is_warning) are only warnings.
    Today the only warning is expiry within EXPIRY_WARNING. Every other entry
    means TLS listeners will fail or peers will reject us.
    """
    now = _utc(now)
    problems: list[str] = []
    chain: list[x509.Certificate] = []
    key: PrivateKeyTypes | None = None
    try:
        chain = _load_chain(files.certificate)
    except CertificateError as e:
        problems.append(str(e))
    try:
        key = _load_key(files.key)
    except CertificateError as e:
        problems.append(str(e))
    if not chain:
        return problems
    leaf = chain[0]
    if key is not None and not _key_matches(key, leaf):
        problems.append(f"key file {files.key} does not match certificate {files.certificate}")
    problems.extend(_domain_problems(files.certificate, leaf, domains))
    problems.extend(_validity_problems(f"certificate {files.certificate}", leaf, now))
    for i, intermediate in enumerate(chain[1:], start=2):
        label = f"certificate {i} ({_describe(intermediate)}) in {files.certificate}"
        problems.extend(_validity_problems(label, intermediate, now))
    problems.extend(_chain_problems(files.certificate, chain))
    return problems


def certificate_names(path: Path) -> list[str]:
    """The leaf's dNSNames in certificate order, for logs and ``unirtc-ctl check``."""
    leaf = _load_chain(path)[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName)


def server_context_factory(files: CertificateFiles) -> CertificateOptions:
    """The server TLS context every listener shares, for startTLS and TLSMemoryBIOFactory.

    It allows TLS 1.2 and later. Compression is off and the server picks the
    cipher; CertificateOptions does both by default. The whole chain from the
    certificate file is sent, so clients that hold only the root can still
    verify us. Bad files raise CertificateError here, at startup, and not on
    the first handshake.
    """
    chain = _load_chain(files.certificate)
    key = _load_key(files.key)
    if not _key_matches(key, chain[0]):
        raise CertificateError(
            f"key file {files.key} does not match certificate {files.certificate}"
        )
    # pyOpenSSL prefers cryptography objects to its deprecated X509/PKey, and
    # CertificateOptions hands them to the Context unchanged. Its annotations
    # have not caught up, hence the ignores.
    options = CertificateOptions(
        privateKey=key,  # type: ignore[arg-type]
        certificate=chain[0],  # type: ignore[arg-type]
        extraCertChain=chain[1:],  # type: ignore[arg-type]
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
    try:
        options.getContext().set_alpn_select_callback(_select_alpn)
    except SSL.Error as e:
        raise CertificateError(f"OpenSSL refused {files.certificate} / {files.key}: {e}") from None
    return options


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes | object:
    """Pick the first ALPN protocol the listener's factory speaks, or negotiate none.

    Twisted's own callback answers an empty protocol when nothing overlaps, which OpenSSL
    turns into an internal_error alert: any client offering ALPN (XEP-0368 "xmpp-client",
    SIP phones, curl) then failed to connect. RFC 7301 §3.2 lets a server go on without ALPN.
    """
    tls_protocol = connection.get_app_data()
    factory = getattr(getattr(tls_protocol, "factory", None), "wrappedFactory", None)
    negotiation = IProtocolNegotiationFactory(factory, None)
    for protocol in negotiation.acceptableProtocols() if negotiation is not None else ():
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS

"""A throwaway PKI for federation tests: a test CA, and leaves with DNS-ID, SRV-ID or XmppAddr names.

EC P-256 keys, so making a dozen certificates costs milliseconds. ``write_pair`` produces the
PEM files ``[tls] certificate``/``key``/``ca`` and Prosody read.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ID_ON_DNSSRV = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")
ID_ON_XMPPADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")


def _der(tag: int, text: str, encoding: str) -> bytes:
    data = text.encode(encoding)
    assert len(data) < 0x80
    return bytes([tag, len(data)]) + data


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])


class TestCA:
    """A CA that issues leaves valid from an hour before ``now`` for ``days`` days."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "unirtc federation test CA", now: datetime | None = None) -> None:
        self.now = now or datetime.now(timezone.utc)
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = _name(name)
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(hours=1)).not_valid_after(self.now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))

    def issue(self, dns: tuple[str, ...] = (), srv: tuple[str, ...] = (), xmpp: tuple[str, ...] = (),
              common_name: str | None = None, days: float = 30, start: timedelta = timedelta(hours=-1),
              ca: bool = False) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A leaf (or, with ``ca``, an intermediate) signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.OtherName(ID_ON_DNSSRV, _der(0x16, s, "ascii")) for s in srv]
        names += [x509.OtherName(ID_ON_XMPPADDR, _der(0x0C, x, "utf-8")) for x in xmpp]
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(self.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.now + start).not_valid_after(self.now + start + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=common_name is None)
        if not ca:
            builder = builder.add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())

    def intermediate(self, name: str = "unirtc test intermediate") -> TestCA:
        """A sub-CA whose certificates chain through it to this one."""
        sub = TestCA.__new__(TestCA)
        sub.now = self.now
        sub.key, sub.certificate = self.issue(common_name=name, ca=True)
        return sub


def self_signed(domain: str, now: datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed leaf for ``domain`` (DNS-ID), as a site without a CA would have."""
    ca = TestCA.__new__(TestCA)
    ca.now = now or datetime.now(timezone.utc)
    ca.key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(domain)
    ca.certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(ca.key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(ca.now - timedelta(hours=1)).not_valid_after(ca.now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(ca.key, hashes.SHA256()))
    return ca.key, ca.certificate


def write_pair(directory: Path, stem: str, key: ec.EllipticCurvePrivateKey,
               chain: list[x509.Certificate]) -> tuple[Path, Path]:
    """Write ``stem.crt`` (the chain, leaf first) and ``stem.key``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, private = directory / f"{stem}.crt", directory / f"{stem}.key"
    certificate.write_bytes(b"".join(pem(c) for c in chain))
    private.write_bytes(key_pem(key))
    private.chmod(0o640)
    return certificate, private

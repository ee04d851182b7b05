# -*- test-case-name: tests.unit.test_browser_readiness -*-
"""What ``unirtc-ctl check`` says about browsers: the URLs they use (web phone, SIP and XMPP over
WebSocket) and whether a browser will get through: a certificate it trusts for the host, TURN
for calls across NATs, the Origins allowed, JsSIP installed.

A browser gives no way around a certificate problem on a WebSocket (no warning page to click
through, the socket just fails), and WebRTC behind NATs needs TURN; those are the usual reasons
a web phone "does not connect", so they are spelt out here, once, before anyone opens the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from unirtc.settings import Settings, parse_ice_uri
from unirtc.tls import CertificateFiles, check_certificate, is_warning
from unirtc.web.phone import CHECKOUT_JSSIP

@dataclass(frozen=True)
class Finding:
    """One line of the report; a ``problem`` makes ``check`` fail (browsers cannot connect at
    all), the other lines inform or warn."""

    text: str
    problem: bool = False


def _web_base(settings: Settings) -> str | None:
    from unirtc.sip.websocket import listener_address

    if not settings.web.listen:
        return None
    address = listener_address(settings.web.listen)
    scheme = "https" if settings.web.tls else "http"
    default = 443 if settings.web.tls else 80
    port = "" if address is None or address[1] == default else f":{address[1]}"
    return f"{scheme}://{settings.server.domain}{port}"


def _self_signed(path: Path) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return False
    return leaf.issuer == leaf.subject


def _certificate(settings: Settings, now: datetime) -> list[Finding]:
    host = settings.server.domain
    files = CertificateFiles(settings.tls.certificate, settings.tls.key)
    if not files.certificate.exists():
        if settings.tls.self_signed:
            return [Finding(f"Certificate for {host}: none yet; the self-signed one made on first start is "
                            "not trusted by browsers: install one from a CA ([tls] certificate, key)")]
        return [Finding(f"Certificate for {host}: {files.certificate} is missing", problem=True)]
    problems = [p for p in check_certificate(files, [host], now) if not is_warning(p)]
    if problems:
        return [Finding(f"Certificate for {host}: {p}; browsers will refuse the page and its WebSockets",
                        problem=True) for p in problems]
    if _self_signed(files.certificate):
        return [Finding(f"Certificate for {host}: self-signed; browsers refuse it (a WebSocket fails "
                        "without a warning page): install one from a CA ([tls] certificate, key)")]
    return [Finding(f"Certificate for {host}: ok")]


def _turn(settings: Settings) -> list[Finding]:
    turn = [uri for uri in settings.turn.uris if parse_ice_uri(uri).scheme.startswith("turn")]
    if not settings.turn.secret:
        return [Finding("TURN: no [turn] secret, so no credentials for browsers: calls between "
                        "networks behind NAT or firewalls will have no media")]
    if not turn:
        return [Finding("TURN: a secret but no turn: URI in [turn] uris: browsers get no relay")]
    return [Finding(f"TURN: {', '.join(turn)}, REST credentials valid {settings.turn.ttl} s from the issuer "
                    "(coturn needs use-auth-secret with the same secret)")]


def _jssip(settings: Settings) -> Finding:
    source = settings.web.jssip if settings.web.jssip is not None else CHECKOUT_JSSIP
    if source.is_file() or (source / "package.json").is_file():
        return Finding(f"JsSIP for /phone: {source}")
    return Finding(f"JsSIP for /phone: not found at {source}; install it (make node-deps, i.e. npm ci) "
                   "or set [web] jssip")


def browser_readiness(settings: Settings, now: datetime) -> list[Finding]:
    """The report's lines, in the order a person reads them (see the module docstring)."""
    base = _web_base(settings)
    if base is None:
        return [Finding("No [web] listen: no web phone and no WebSockets for browsers")]
    socket = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    findings = [Finding(f"Web phone: {base}/phone/")]
    if settings.web.click_to_call:
        findings.append(Finding(f"Click-to-call: visitors without an account may call "
                                f"{settings.web.click_to_call} from {base}/phone/ (rate-limited per address)"))
    if settings.sip.websocket:
        findings.append(Finding(f"SIP over WebSocket: {socket}/{settings.sip.websocket}"))
    else:
        findings.append(Finding("SIP over WebSocket: off ([sip] websocket is empty); /phone cannot call"))
    if settings.xmpp.websocket:
        findings.append(Finding(f"XMPP over WebSocket: {socket}/{settings.xmpp.websocket}"))
    if not settings.web.tls:
        findings.append(Finding("Plain HTTP ([web] tls = no): browsers allow microphones and serve "
                                "SIP here only behind a TLS proxy on this host"))
    else:
        findings += _certificate(settings, now)
    origins = ", ".join(settings.web.origins) or "(none)"
    findings.append(Finding(f"Pages allowed to open WebSockets ([web] origins): {origins}"))
    findings += _turn(settings)
    findings.append(_jssip(settings))
    return findings

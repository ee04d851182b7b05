"""What a loaded configuration is: typed, immutable settings, one dataclass per INI section.

``unirtc.config`` reads and validates the file into these; everything else only reads them.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from unirtc.xmpp.jid import JID

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# RFC 7064 stunURI and RFC 7065 turnURI: scheme ":" host [ ":" port ] [ "?transport=" transport ].
_ICE_URI = re.compile(
    rf"(stuns?|turns?):(\[[^\]\s]+\]|{_LABEL}(?:\.{_LABEL})*\.?)"
    r"(?::(\d{1,5}))?(?:\?transport=(\w+))?"
)


@dataclass(frozen=True)
class UdpListener:
    """Our own ``udp:PORT[:interface=ADDR]`` form: Twisted has no ``udp:`` endpoint type."""

    port: int
    interface: str = ""

    def __str__(self) -> str:
        return f"udp:{self.port}" + (f":interface={self.interface}" if self.interface else "")


@dataclass(frozen=True)
class SipListener:
    """One SIP transport listener from ``[sip] listen``."""

    transport: str
    port: int
    interface: str = ""

    def __str__(self) -> str:
        return f"{self.transport}:{self.port}" + (
            f":interface={self.interface}" if self.interface else ""
        )


@dataclass(frozen=True)
class IceUri:
    """A ``stun:``/``turn:`` URI (RFC 7064, RFC 7065), split so DNS records can be derived."""

    scheme: str
    host: str  # a host name or an IP address (without brackets)
    port: int
    transport: str  # "udp" or "tcp": stated, or the scheme's default

    @property
    def is_address(self) -> bool:
        """True for IP literals, which cannot be the target of an SRV record (RFC 2782)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_ice_uri(uri: str) -> IceUri:
    """Split one ``[turn] uris`` word; ValueError says what is wrong with it."""
    match = _ICE_URI.fullmatch(uri)
    if not match:
        raise ValueError("expected stun:HOST[:PORT], stuns:..., "
                         "turn:HOST[:PORT][?transport=udp|tcp] or turns:...")
    scheme, host, port, transport = match.groups()
    if host.startswith("["):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"{host} is not an IPv6 address") from None
    if transport is not None and scheme.startswith("stun"):
        raise ValueError("stun: and stuns: URIs take no ?transport=")
    if transport not in (None, "udp", "tcp"):
        raise ValueError(f"transport must be udp or tcp, not {transport!r}")
    tls = scheme.endswith("s")
    number = int(port) if port else (5349 if tls else 3478)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is not in 1-65535")
    return IceUri(scheme, host.lower().rstrip("."), number, transport or ("tcp" if tls else "udp"))


@dataclass(frozen=True)
class ServerSettings:
    domain: str
    admins: tuple[JID, ...]
    state_dir: Path
    database: str
    log_level: str
    plugin_paths: tuple[Path, ...]


@dataclass(frozen=True)
class TLSSettings:
    certificate: Path
    key: Path
    self_signed: bool
    ca: Path | None


@dataclass(frozen=True)
class XMPPSettings:
    c2s: str
    c2s_direct_tls: str
    s2s: str
    plugins: tuple[str, ...] | None  # None: every bundled plugin
    max_stanza_size: int
    websocket: str = "xmpp-websocket"  # RFC 7395 path on the [web] listener; empty: none
    offline_max_messages: int = 500  # messages kept per user while offline (XEP-0160)


@dataclass(frozen=True)
class MUCSettings:
    domain: str
    restrict_room_creation: str = "local"  # anyone | local | admins
    max_history: int = 20
    max_occupants: int = 100
    message_rate: int = 60  # messages per minute and occupant
    message_burst: int = 10


@dataclass(frozen=True)
class S2SSettings:
    hosts: dict[str, tuple[str, int]]
    require_encryption: bool
    dialback: bool


@dataclass(frozen=True)
class ComponentSettings:
    listen: str
    secrets: dict[str, str]


@dataclass(frozen=True)
class SIPSettings:
    domains: tuple[str, ...]
    listen: tuple[SipListener, ...]
    outbound: bool = False  # relay local users' requests to foreign domains (RFC 3263 lookup)
    websocket: str = "sip-websocket"  # RFC 7118 path on the [web] listener; empty: none


@dataclass(frozen=True)
class TURNSettings:
    secret: str | None
    realm: str
    ttl: int
    uris: tuple[str, ...]
    stun: UdpListener | None


@dataclass(frozen=True)
class WebSettings:
    listen: str
    tls: bool
    origins: tuple[str, ...] = ()  # allowed WebSocket Origins, normalised; "*" allows any
    jssip: Path | None = None  # JsSIP for /phone: a browser script or the npm package folder
    click_to_call: str = ""  # a local SIP URI anonymous browsers may call from /phone; empty: none


@dataclass(frozen=True)
class Settings:
    path: Path
    server: ServerSettings
    tls: TLSSettings
    xmpp: XMPPSettings
    muc: MUCSettings
    s2s: S2SSettings
    components: ComponentSettings
    sip: SIPSettings
    turn: TURNSettings
    web: WebSettings

    @property
    def served_domains(self) -> list[str]:
        """Every DNS name clients reach this server by, for certificates and SRV records."""
        names = [self.server.domain, self.muc.domain, *self.sip.domains]
        return list(dict.fromkeys(names))

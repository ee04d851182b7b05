"""The DNS records a site publishes so clients and peers find this server's listeners.

RFC 6120 §3.2 and XEP-0368 (XMPP SRV), RFC 3263 (SIP NAPTR + SRV), RFC 5928 / RFC 7064/7065
(TURN and STUN SRV).  Printed by ``unirtc-ctl check`` in zone-file syntax.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twisted.internet.endpoints import serverFromString

from unirtc.config import Settings

TTL = 3600
# RFC 3263 §4.1 NAPTR services per SIP transport.
_NAPTR = {"tls": ("SIPS+D2T", "_sips._tcp"), "tcp": ("SIP+D2T", "_sip._tcp"), "udp": ("SIP+D2U", "_sip._udp")}


def endpoint_port(description: str) -> int | None:
    """The port a Twisted server endpoint description listens on, or None (e.g. UNIX sockets)."""
    if not description:
        return None
    return getattr(serverFromString(None, description), "_port", None)


def _srv(name: str, port: int, target: str, priority: int = 0, weight: int = 5) -> str:
    return f"{name}. {TTL} IN SRV {priority} {weight} {port} {target}."


def zone_records(settings: Settings) -> list[str]:
    domain = settings.server.domain
    records = []
    xmpp = [
        ("_xmpp-client._tcp", settings.xmpp.c2s, [domain]),
        ("_xmpps-client._tcp", settings.xmpp.c2s_direct_tls, [domain]),
        ("_xmpp-server._tcp", settings.xmpp.s2s, [domain, settings.muc.domain]),
    ]
    for service, listener, names in xmpp:
        port = endpoint_port(listener)
        if port is not None:
            records += [_srv(f"{service}.{name}", port, domain) for name in names]
    sip_host = next((d for d in settings.sip.domains if d != domain), domain)
    order = {"tls": 10, "tcp": 20, "udp": 30}
    for listener in sorted(settings.sip.listen, key=lambda l: order[l.transport]):
        service, prefix = _NAPTR[listener.transport]
        for sip_domain in settings.sip.domains:
            records.append(f'{sip_domain}. {TTL} IN NAPTR {order[listener.transport]} 0 "s" '
                           f'"{service}" "" {prefix}.{sip_domain}.')
            records.append(_srv(f"{prefix}.{sip_domain}", listener.port, sip_host))
    if settings.turn.stun is not None:
        records.append(_srv(f"_stun._udp.{domain}", settings.turn.stun.port, domain))
    for uri in settings.turn.uris:
        scheme, _, rest = uri.partition(":")
        if scheme not in ("turn", "turns"):
            continue
        location = urlsplit(f"//{rest}")
        transport = "tcp" if scheme == "turns" else dict(
            p.split("=", 1) for p in (location.query or "transport=udp").split("&") if "=" in p
        ).get("transport", "udp")
        default_port = 5349 if scheme == "turns" else 3478
        name = f"_{scheme}._{transport}.{domain}"
        records.append(_srv(name, location.port or default_port, location.hostname or domain))
    return list(dict.fromkeys(records))

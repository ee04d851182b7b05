"""The DNS records a site publishes so clients and peers find this server's listeners.

RFC 6120 §3.2 and XEP-0368 (XMPP SRV), RFC 3263 (SIP NAPTR + SRV), RFC 5928 / RFC 7064/7065
(TURN and STUN SRV).  Printed by ``unirtc-ctl check`` in zone-file syntax.
"""

from __future__ import annotations

from twisted.internet.endpoints import serverFromString

from unirtc.settings import Settings, parse_ice_uri

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
    """SRV and NAPTR lines for every enabled listener and TURN URI, without duplicates."""
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
        ice = parse_ice_uri(uri)  # load_settings has already checked every URI
        # stun: URIs name the STUN service, published above for the embedded responder; an SRV
        # target must be a host name (RFC 2782), so URIs holding an IP address have no record.
        if ice.scheme.startswith("turn") and not ice.is_address:
            records.append(_srv(f"_{ice.scheme}._{ice.transport}.{domain}", ice.port, ice.host))
    return list(dict.fromkeys(records))

"""The TURN credential object every interface hands out: REST endpoint, unirtc-ctl, XEP-0215.

One function builds it so the three agree to the byte: the JSON has the TURN REST API draft's
fields (draft-uberti-behave-turn-rest-00 §2.2: ``username``, ``password``, ``ttl``, ``uris``)
and the WebRTC ``RTCIceServer`` list a browser passes straight to ``RTCPeerConnection``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unirtc.settings import TURNSettings
from unirtc.turn.credentials import rest_credentials


class NoTurnSecret(Exception):
    """``[turn]`` has no ``secret`` or ``secret_file``: there is nothing to sign credentials with."""


@dataclass(frozen=True)
class TurnCredentials:
    """Credentials for one account, valid for ``ttl`` seconds until ``expires`` (Unix time)."""

    username: str
    password: str
    ttl: int
    expires: int
    uris: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        """The REST response body (and ``unirtc-ctl turn-credentials --json``)."""
        return {
            "username": self.username,
            "password": self.password,
            "ttl": self.ttl,
            "uris": list(self.uris),
            "iceServers": self.ice_servers(),
        }

    def ice_servers(self) -> list[dict[str, Any]]:
        """``RTCIceServer`` entries: stun: URIs alone, turn:/turns: URIs with the credentials.

        STUN needs no credentials, and WebRTC ignores them on stun: URLs; keeping them apart
        means a browser never sends a TURN password where it is not needed.
        """
        stun = [uri for uri in self.uris if uri.startswith(("stun:", "stuns:"))]
        turn = [uri for uri in self.uris if uri.startswith(("turn:", "turns:"))]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": stun})
        if turn:
            servers.append({"urls": turn, "username": self.username, "credential": self.password})
        return servers


def check_ttl(turn: TURNSettings, ttl: int | None) -> int:
    """The lifetime to issue: the configured ``[turn] ttl`` unless a shorter one is asked for.

    ValueError (with the allowed range) for a ttl below 1 or above the configured one: the
    configured value is the site's policy for how long a leaked credential stays usable.
    """
    if ttl is None:
        return turn.ttl
    if not 1 <= ttl <= turn.ttl:
        raise ValueError(f"ttl must be between 1 and {turn.ttl} seconds ([turn] ttl), got {ttl}")
    return ttl


def issue(turn: TURNSettings, account: str, now: float, ttl: int | None = None) -> TurnCredentials:
    """Mint credentials for ``account`` (a bare JID, which becomes the username's user part).

    Raises ``NoTurnSecret`` when no secret is configured and ValueError for a bad ``ttl``.
    Callers must have authenticated ``account`` first. The one exception is a click-to-call
    visitor on /phone ([web] click_to_call), who gets an hour's credentials under a
    ``guest-<random>`` name, rate-limited per address (``unirtc.web.phone``).
    """
    if not turn.secret:
        raise NoTurnSecret("no TURN secret is configured ([turn] secret or secret_file)")
    lifetime = check_ttl(turn, ttl)
    username, password = rest_credentials(turn.secret, account, lifetime, now)
    return TurnCredentials(username, password, lifetime, int(now) + lifetime, tuple(turn.uris))

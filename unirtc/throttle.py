"""A failure throttle for password checks: per-key failure scores, growing delays, slow decay.

Every place that checks a password (HTTP Basic for TURN credentials, XMPP SASL, SIP digest)
needs the same defence against guessing: after a few free failures for one key (an account, a
source address), further attempts are refused for a delay that doubles with each failure, up to
a cap, and the score decays exponentially so a key is forgiven over time.  Refused attempts are
meant to be answered *without* checking the password, which also bounds the CPU an attacker can
make the key derivation spend.

Sans-I/O: the caller passes ``now`` (any monotonic-enough clock in seconds), nothing here reads
the time or schedules anything.  Memory is bounded: the least recently failed keys are evicted
first once ``max_keys`` are tracked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _Entry:
    score: float
    updated: float
    blocked_until: float


@dataclass
class FailureThrottle:
    """Per-key failure scores and the delay each one has earned.

    With the defaults, five failures in a row cost nothing; the sixth blocks the key for 1 s,
    the seventh for 2 s, then 4, 8... up to ``max_delay``.  The score halves every ``half_life``
    seconds without failures, so an hour later a user who mistyped is back to free attempts.
    """

    free_failures: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    half_life: float = 600.0
    max_keys: int = 100_000
    _entries: dict[Hashable, _Entry] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("need free_failures >= 0 and 0 < base_delay <= max_delay")
        if self.half_life <= 0 or self.max_keys < 1:
            raise ValueError("need half_life > 0 and max_keys >= 1")

    def __len__(self) -> int:
        return len(self._entries)

    def _decayed(self, entry: _Entry, now: float) -> float:
        elapsed = max(0.0, now - entry.updated)  # a clock stepping back forgives nothing
        return entry.score * 0.5 ** (elapsed / self.half_life)

    def score(self, key: Hashable, now: float) -> float:
        """The key's failure score at ``now`` (0 for a key never seen or forgotten)."""
        entry = self._entries.get(key)
        return 0.0 if entry is None else self._decayed(entry, now)

    def delay_for(self, score: float) -> float:
        """The delay a score earns: 0 up to ``free_failures``, then doubling up to ``max_delay``."""
        excess = score - self.free_failures
        if excess <= 0:
            return 0.0
        if excess > 64:  # 2 ** excess would overflow long before; the cap applies anyway
            return self.max_delay
        return min(self.max_delay, self.base_delay * 2 ** (excess - 1))

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds before an attempt for ``key`` may be checked; 0 means check it now.

        Never more than ``max_delay``, even if the clock stepped back since the block was set.
        """
        entry = self._entries.get(key)
        if entry is None:
            return 0.0
        return min(self.max_delay, max(0.0, entry.blocked_until - now))

    def failure(self, key: Hashable, now: float) -> float:
        """Record one failed attempt; returns the delay now imposed on the key (0 if none)."""
        entry = self._entries.pop(key, None)
        score = 1.0 if entry is None else self._decayed(entry, now) + 1.0
        delay = self.delay_for(score)
        blocked_until = max(now + delay, entry.blocked_until if entry is not None else now)
        self._entries[key] = _Entry(score, now, blocked_until)  # re-inserted last: LRU order
        if len(self._entries) > self.max_keys:
            self._evict(now)
        return delay

    def reset(self, key: Hashable) -> None:
        """Forget a key, e.g. an account after a successful login.

        Do not reset a source address on success: one valid account would then clear the
        address's record while it guesses the passwords of others.
        """
        self._entries.pop(key, None)

    def prune(self, now: float, negligible: float = 0.05) -> None:
        """Drop keys whose score has decayed to almost nothing and whose block has passed."""
        for key in [k for k, e in self._entries.items()
                    if e.blocked_until <= now and self._decayed(e, now) < negligible]:
            del self._entries[key]

    def _evict(self, now: float) -> None:
        self.prune(now)
        while len(self._entries) > self.max_keys:
            del self._entries[next(iter(self._entries))]  # the least recently failed key


def address_key(host: str) -> str:
    """The throttle key for a client address: the IPv4 address, or the IPv6 /64 it sits in.

    One IPv6 host usually owns a whole /64, so keying single IPv6 addresses would let it rotate
    through 2**64 fresh keys.  IPv4-mapped IPv6 addresses count as the IPv4 address.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)

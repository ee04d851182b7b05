# -*- test-case-name: tests.unit.test_muc_history -*-
"""Discussion history sent to a new occupant (XEP-0045 §7.2.15).

The room keeps the last messages that had a body, as reflected (from the sender's occupant
JID, with the room's stanza-id). A joining client may narrow what it receives with
``<history maxchars maxstanzas seconds since/>``; every limit given applies, and the room's own
length (``muc#maxhistoryfetch``) caps them all. ``maxchars`` counts the characters of each
complete stanza as sent, so it is measured once, when the message is stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from twisted.words.xish import domish

from unirtc.muc.model import NS_MUC
from unirtc.muc.stanzas import clone, delay, format_stamp, parse_stamp
from unirtc.xmpp.stanzas import to_bytes

_ATTRIBUTES = ("maxchars", "maxstanzas", "seconds", "since")
# Room JID, recipient and stamp change per delivery; a margin keeps maxchars honest about them.
_ADDRESS_MARGIN = 160


class HistoryRequestError(ValueError):
    """A ``<history/>`` element with a value that is not a number or a date."""


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """What a joining occupant asked for; None means no limit of that kind."""

    maxchars: int | None = None
    maxstanzas: int | None = None
    seconds: int | None = None
    since: float | None = None

    @classmethod
    def parse(cls, join: domish.Element | None) -> HistoryRequest:
        """Read ``<history/>`` from the join's ``<x xmlns='muc'/>`` (absent: no limits)."""
        if join is None:
            return cls()
        history = next(join.elements(NS_MUC, "history"), None)
        if history is None:
            return cls()
        values: dict[str, int | float | None] = {}
        for name in _ATTRIBUTES:
            text = history.getAttribute(name)
            if text is None:
                values[name] = None
            elif name == "since":
                try:
                    values[name] = parse_stamp(text)
                except ValueError:
                    raise HistoryRequestError(
                        f"history since={text[:40]!r} is not a XEP-0082 DateTime") from None
            else:
                if not (text.isascii() and text.isdigit()) or len(text) > 12:
                    raise HistoryRequestError(f"history {name}={text[:40]!r} is not a non-negative integer")
                values[name] = int(text)
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Entry:
    message: domish.Element  # as reflected, without 'to'
    when: float
    stamp: str
    size: int


class History:
    """The last ``length`` messages of a room, oldest first."""

    def __init__(self, length: int) -> None:
        self._entries: deque[_Entry] = deque(maxlen=max(length, 0))

    def __len__(self) -> int:
        return len(self._entries)

    def resize(self, length: int) -> None:
        self._entries = deque(self._entries, maxlen=max(length, 0))

    def add(self, message: domish.Element, now: float) -> None:
        if self._entries.maxlen == 0:
            return
        size = len(to_bytes(message).decode("utf-8")) + _ADDRESS_MARGIN
        self._entries.append(_Entry(message, now, format_stamp(now), size))

    def replay(self, request: HistoryRequest, room: str, to: str, now: float,
               cap: int) -> Iterator[domish.Element]:
        """The messages ``request`` selects, oldest first, each with a XEP-0203 ``<delay/>``."""
        entries = list(self._entries)[-cap:] if cap > 0 else []
        if request.maxstanzas is not None:
            entries = entries[len(entries) - request.maxstanzas:] if request.maxstanzas else []
        if request.seconds is not None:
            entries = [e for e in entries if e.when >= now - request.seconds]
        if request.since is not None:
            entries = [e for e in entries if e.when > request.since]
        if request.maxchars is not None:
            budget, kept = request.maxchars, []
            for entry in reversed(entries):
                if entry.size > budget:
                    break
                budget -= entry.size
                kept.append(entry)
            entries = kept[::-1]
        for entry in entries:
            message = clone(entry.message, to=to)
            message.children.append(delay(entry.stamp, room))
            yield message

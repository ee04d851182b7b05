# -*- test-case-name: tests.protocol.test_router -*-
"""XMPP hook events: what plugins receive, and how their answers become stanzas.

The event names and the handler contract are listed in ``unirtc/xmpp/__init__.py``. This
module holds the event objects and ``dispatch``, which fires one event on the plugin bus and
acts on the first answer: a stanza is routed, ``True`` means handled, a Deferred (or
coroutine) is waited for and its result treated the same way, ``StanzaError`` bounces the
stanza, and any other exception is logged and bounces it as ``internal-server-error``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.python.failure import Failure
from twisted.words.xish import domish

from unirtc.logging import get_logger
from unirtc.plugin import HookBus
from unirtc.xmpp.jid import JID
from unirtc.xmpp.stanzas import StanzaError, can_bounce, error_reply, iq_result

if TYPE_CHECKING:
    from unirtc.xmpp.router import LocalSession, Router

log = get_logger("unirtc.xmpp.events")


@dataclass
class StanzaEvent:
    """A stanza on its way: ``origin`` is the local session that sent it (None: the server).

    ``to`` and ``sender`` are the prepared addresses (``to`` is the sender's bare JID when the
    stanza had none, as RFC 6120 §10.3 reads it). ``router`` gives handlers everything else:
    ``router.route(stanza)`` to send, ``router.sessions_of(bare)`` to find a user's resources.
    """

    stanza: domish.Element
    origin: LocalSession | None
    router: Router
    to: JID | None = None
    sender: JID | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.stanza.name

    def send(self, element: domish.Element) -> None:
        """Route any stanza, as if the server sent it."""
        self.router.route(element)

    def result(self, payload: domish.Element | None = None) -> domish.Element:
        """An IQ result for this request, to return from a handler."""
        return iq_result(self.stanza, payload)


@dataclass
class PresenceEvent(StanzaEvent):
    """``presence/broadcast``: ``initial`` is True for the first available presence of a session."""

    initial: bool = False


@dataclass
class SessionEvent:
    """``session-started``, ``session-ended`` and ``resource-bound``."""

    session: LocalSession
    router: Router


def dispatch(bus: HookBus, name: str, event: StanzaEvent) -> bool:
    """Fire ``name``; True if a handler took the stanza (its answer is dealt with here)."""
    try:
        answer = bus.fire(name, event)
    except Exception:
        _failed(event, Failure(), name)
        return True
    if answer is None:
        return False
    if inspect.iscoroutine(answer):
        answer = ensureDeferred(answer)
    if isinstance(answer, Deferred):
        answer.addCallbacks(lambda value: _answered(event, value), lambda f: _failed(event, f, name))
        return True
    _answered(event, answer)
    return True


def notify(bus: HookBus, name: str, *args: Any) -> None:
    """Fire an event that only informs (session-started...): every handler runs, none answers.

    The bus stops at the first non-None result, so informational handlers should return None;
    an exception in one is logged and does not affect the session.
    """
    try:
        bus.fire(name, *args)
    except Exception:
        log.failure("A handler of {event} failed", event=name)


def bounce(router: Router, stanza: domish.Element, error: StanzaError) -> None:
    """Send ``error`` back to the sender of ``stanza``, unless that could loop (RFC 6120 §8.3.1)."""
    if can_bounce(stanza) and stanza.getAttribute("from") is not None:
        router.route(error_reply(stanza, error))


def _answered(event: StanzaEvent, value: object) -> None:
    if isinstance(value, domish.Element):
        event.router.route(value)


def _failed(event: StanzaEvent, failure: Failure, name: str = "") -> None:
    if failure.check(StanzaError):
        bounce(event.router, event.stanza, failure.value)
        return
    log.failure("A handler of {event} failed on a stanza", failure, event=name)
    bounce(event.router, event.stanza, StanzaError("internal-server-error"))

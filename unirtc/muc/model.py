# -*- test-case-name: tests.unit.test_muc_model -*-
"""The vocabulary of a room: namespaces, affiliations and roles, nicknames, settings, occupants.

Everything here is plain data with the rules XEP-0045 attaches to it (which role an affiliation
gets on entry, how nicknames compare), so the room state machine reads as the protocol and the
rules are testable on their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from precis_i18n import get_profile
from twisted.words.xish import domish

from unirtc.xmpp.jid import JID
from unirtc.xmpp.stanzas import StanzaError

NS_MUC = "http://jabber.org/protocol/muc"
NS_USER = "http://jabber.org/protocol/muc#user"
NS_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_OWNER = "http://jabber.org/protocol/muc#owner"
NS_REQUEST = "http://jabber.org/protocol/muc#request"
NS_SELF_PING = "http://jabber.org/protocol/muc#self-ping-optimization"
NS_STABLE_ID = "http://jabber.org/protocol/muc#stable_id"
NS_DELAY = "urn:xmpp:delay"
NS_SID = "urn:xmpp:sid:0"
NS_PING = "urn:xmpp:ping"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"

_NICK_KEY = get_profile("NicknameCaseMapped")
_NICK_SHOWN = get_profile("NicknameCasePreserved")


class Affiliation(IntEnum):
    """XEP-0045 §5.2: long-lived standing in a room, ordered so comparisons read as rank."""

    OUTCAST = -1
    NONE = 0
    MEMBER = 1
    ADMIN = 2
    OWNER = 3

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Affiliation:
        """The affiliation named ``text``; ValueError for anything else."""
        if text not in _AFFILIATIONS:
            raise ValueError(f"unknown affiliation {text!r}")
        return _AFFILIATIONS[text]


class Role(IntEnum):
    """XEP-0045 §5.1: what an occupant may do during this visit."""

    NONE = 0
    VISITOR = 1
    PARTICIPANT = 2
    MODERATOR = 3

    @property
    def wire(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        if text not in _ROLES:
            raise ValueError(f"unknown role {text!r}")
        return _ROLES[text]


_AFFILIATIONS = {a.wire: a for a in Affiliation}
_ROLES = {r.wire: r for r in Role}


def default_role(affiliation: Affiliation, moderated: bool) -> Role:
    """XEP-0045 §5.1.2: the role an affiliation enters with (outcasts never enter)."""
    if affiliation >= Affiliation.ADMIN:
        return Role.MODERATOR
    if affiliation == Affiliation.MEMBER or (affiliation == Affiliation.NONE and not moderated):
        return Role.PARTICIPANT
    if affiliation == Affiliation.NONE:
        return Role.VISITOR
    return Role.NONE


MAX_NICK = 1023


class InvalidNick(ValueError):
    """A room nickname RFC 8266 does not allow."""


@dataclass(frozen=True, slots=True)
class Nick:
    """A nickname as shown (``text``, RFC 8266 NicknameCasePreserved) and as compared (``key``).

    The resourcepart of the occupant JID is already an OpaqueString; RFC 8266 §2.4 then asks a
    room to enforce the Nickname profile, so "Bob", " bob" and "ＢＯＢ" are one occupant.
    """

    text: str
    key: str

    @classmethod
    def prepare(cls, raw: str) -> Nick:
        if len(raw) > MAX_NICK:  # a resourcepart's limit (RFC 7622 §3.4), checked before any work
            raise InvalidNick(f"nickname longer than {MAX_NICK} characters")
        try:
            return cls(_NICK_SHOWN.enforce(raw), _NICK_KEY.enforce(raw))
        except UnicodeEncodeError as e:
            reason = str(e.reason).removeprefix("DISALLOWED/")
            raise InvalidNick(f"nickname not allowed by RFC 8266 ({reason})") from None


def prepare_nick(raw: str | None) -> Nick:
    """The nickname of an occupant JID's resourcepart, or the stanza error XEP-0045 §7.2.6 gives."""
    if raw is None:
        raise StanzaError("jid-malformed", text="a room nickname is required")
    try:
        return Nick.prepare(raw)
    except InvalidNick as e:
        raise StanzaError("jid-malformed", text=str(e)) from None


PM_CHOICES = ("anyone", "participants", "moderators", "none")


@dataclass
class RoomConfig:
    """The muc#roomconfig settings of one room; JSON-shaped so persistence is ``as_json``."""

    name: str = ""
    description: str = ""
    language: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password_protected: bool = False
    password: str = ""
    max_users: int = 0  # 0: the service-wide limit
    whois: str = "moderators"  # or "anyone" (non-anonymous)
    max_history: int = 20
    allow_pm: str = "anyone"  # one of PM_CHOICES: who may send private messages
    allow_invites: bool = False
    change_subject: bool = False
    logging: bool = False

    @property
    def non_anonymous(self) -> bool:
        return self.whois == "anyone"

    @property
    def locked_by_password(self) -> bool:
        return self.password_protected and bool(self.password)

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoomConfig:
        """Rebuild from ``as_json``; unknown keys are dropped and mistyped ones keep defaults,
        so a document written by another version never stops the room from loading."""
        config = cls()
        for f in fields(cls):
            value = data.get(f.name)
            if value is not None and type(value) is type(getattr(config, f.name)):
                setattr(config, f.name, value)
        return config


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class MucOptions:
    """Service-wide limits every room applies (``[muc]`` in the configuration)."""

    max_users: int = 100
    max_history: int = 20
    message_rate: float = 1.0  # messages per second, per occupant
    message_burst: int = 10
    server_admins: frozenset[JID] = frozenset()
    new_id: Callable[[], str] = _new_id  # stanza-ids (XEP-0359); injectable for tests


@dataclass
class TokenBucket:
    """Per-occupant message budget: ``burst`` at once, refilled at ``rate`` per second."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Occupant:
    """Someone in the room under one nickname, possibly from several clients of one account.

    ``sessions`` maps each real full JID to its latest presence (its children, minus MUC
    payloads); the most recently updated session is the one others see.
    """

    nick: Nick
    bare: JID
    role: Role
    affiliation: Affiliation
    bucket: TokenBucket
    sessions: dict[JID, list[domish.Element]] = field(default_factory=dict)

    @property
    def primary(self) -> JID:
        return next(reversed(self.sessions))

    def update(self, session: JID, children: list[domish.Element]) -> None:
        """Record a session's presence and make it the one shown."""
        self.sessions.pop(session, None)
        self.sessions[session] = children

# -*- test-case-name: tests.unit.test_roster -*-
"""Rosters and the RFC 6121 §3 subscription state machine, as pure data (Prosody's rostermanager).

A ``Roster`` is one account's contact list: items (RFC 6121 §2.1.2: jid, name, groups,
subscription none/to/from/both, ``ask`` for a pending outbound request, ``approved`` for a
pre-approval, §3.4) plus the inbound requests still waiting for an answer (pending-in, §3.1.3,
which the roster itself never shows) and the XEP-0237 version, bumped on every change.

Each ``outbound_*``/``inbound_*`` method applies one subscription stanza to the roster of the
account that sends it (outbound) or receives it (inbound) and returns an ``Outcome``: what the
presence plugin must do (route it, deliver it, push the item, send presence). The plugins do the
I/O; everything RFC 6121 decides lives here, so it can be tested state by state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_NAME = 1023
MAX_GROUPS = 64
SUBSCRIPTIONS = ("none", "to", "from", "both")


class RosterError(ValueError):
    """A roster set that RFC 6121 §2.3.3 refuses; ``condition`` is the stanza error to send."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition


@dataclass
class RosterItem:
    jid: str
    name: str | None = None
    groups: list[str] = field(default_factory=list)
    subscription: str = "none"
    ask: bool = False
    approved: bool = False

    @property
    def has_to(self) -> bool:
        """The user receives the contact's presence."""
        return self.subscription in ("to", "both")

    @property
    def has_from(self) -> bool:
        """The contact receives the user's presence."""
        return self.subscription in ("from", "both")

    def _set(self, to: bool, from_: bool) -> None:
        self.subscription = {(False, False): "none", (True, False): "to",
                             (False, True): "from", (True, True): "both"}[(to, from_)]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"subscription": self.subscription}
        if self.name is not None:
            data["name"] = self.name
        if self.groups:
            data["groups"] = list(self.groups)
        if self.ask:
            data["ask"] = True
        if self.approved:
            data["approved"] = True
        return data

    @classmethod
    def from_json(cls, jid: str, data: dict[str, Any]) -> RosterItem:
        subscription = data.get("subscription", "none")
        return cls(jid, data.get("name"), list(data.get("groups", ())),
                   subscription if subscription in SUBSCRIPTIONS else "none",
                   bool(data.get("ask")), bool(data.get("approved")))


@dataclass(frozen=True)
class Outcome:
    """What one subscription stanza requires of the server (RFC 6121 §3).

    ``route``: send the stanza on (outbound) or deliver it to the user's resources (inbound).
    ``push``: the item changed; push it to interested resources. ``reply``: answer the sender
    with this presence type on the user's behalf. ``send_presence``: send the user's current
    presence (``"available"``) or ``"unavailable"`` from each available resource to the contact.
    """

    route: bool = False
    push: bool = False
    reply: str | None = None
    send_presence: str | None = None


IGNORE = Outcome()


@dataclass
class Roster:
    items: dict[str, RosterItem] = field(default_factory=dict)
    pending_in: dict[str, str] = field(default_factory=dict)  # contact -> the request, as XML
    version: int = 0

    # -- storage -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "items": {j: i.to_json() for j, i in self.items.items()},
                "pending_in": dict(self.pending_in)}

    @classmethod
    def from_json(cls, data: Any | None) -> Roster:
        if not isinstance(data, dict):
            return cls()
        items = {jid: RosterItem.from_json(jid, item) for jid, item in dict(data.get("items", {})).items()}
        return cls(items, dict(data.get("pending_in", {})), int(data.get("version", 0)))

    # -- the roster itself (RFC 6121 §2) -------------------------------------------------------

    def touch(self) -> None:
        self.version += 1

    def get(self, jid: str) -> RosterItem | None:
        return self.items.get(jid)

    def set_item(self, jid: str, name: str | None, groups: list[str], max_items: int) -> RosterItem:
        """A roster set (§2.3): name and groups change; the subscription state never does."""
        if name is not None and len(name) > MAX_NAME:
            raise RosterError("not-acceptable", f"the name is longer than {MAX_NAME} characters")
        if len(groups) > MAX_GROUPS:
            raise RosterError("not-acceptable", f"more than {MAX_GROUPS} groups")
        if len(set(groups)) != len(groups):
            raise RosterError("bad-request", "a group is listed twice")
        for group in groups:
            if not group or len(group) > MAX_NAME:
                raise RosterError("not-acceptable", "a group name is empty or too long")
        item = self.items.get(jid)
        if item is None:
            if len(self.items) >= max_items:
                raise RosterError("resource-constraint", f"a roster holds at most {max_items} items")
            item = self.items[jid] = RosterItem(jid)
        item.name, item.groups = name or None, list(groups)
        self.touch()
        return item

    def remove_item(self, jid: str) -> tuple[RosterItem | None, bool]:
        """A roster remove (§2.5): the item, and whether an inbound request was pending.

        The caller sends ``unsubscribe`` if the item had ``to`` or ``ask`` and ``unsubscribed``
        if it had ``from`` or a request was pending (§2.5.2).
        """
        item = self.items.pop(jid, None)
        pending = self.pending_in.pop(jid, None) is not None
        if item is not None or pending:
            self.touch()
        return item, pending

    def _item(self, jid: str) -> RosterItem:
        item = self.items.get(jid)
        if item is None:
            item = self.items[jid] = RosterItem(jid)
        return item

    # -- what the user sends (outbound, §3.1.2, §3.1.5, §3.2.2, §3.3.2) --------------------------

    def outbound_subscribe(self, contact: str) -> Outcome:
        """§3.1.2: the request is routed; the item shows ``ask`` unless already subscribed."""
        item = self._item(contact)
        if item.has_to or item.ask:
            return Outcome(route=True)
        item.ask = True
        self.touch()
        return Outcome(route=True, push=True)

    def outbound_subscribed(self, contact: str) -> Outcome:
        """§3.1.5 approval, or §3.4 pre-approval when no request is pending."""
        item = self.items.get(contact)
        if item is not None and item.has_from:
            self.pending_in.pop(contact, None)
            return IGNORE
        if self.pending_in.pop(contact, None) is not None:
            item = self._item(contact)
            item._set(item.has_to, True)
            item.approved = False
            self.touch()
            return Outcome(route=True, push=True, send_presence="available")
        item = self._item(contact)
        if item.approved:
            return IGNORE
        item.approved = True
        self.touch()
        return Outcome(push=True)

    def outbound_unsubscribe(self, contact: str) -> Outcome:
        """§3.3.2: the user cancels its subscription to the contact (or its pending request)."""
        item = self.items.get(contact)
        if item is None or not (item.has_to or item.ask):
            return Outcome(route=True)
        item._set(False, item.has_from)
        item.ask = False
        self.touch()
        return Outcome(route=True, push=True)

    def outbound_unsubscribed(self, contact: str) -> Outcome:
        """§3.2.2 cancel the contact's subscription, §3.1.5 deny a request, §3.4 drop a pre-approval."""
        item = self.items.get(contact)
        denied = self.pending_in.pop(contact, None) is not None
        if item is not None and item.has_from:
            item._set(item.has_to, False)
            item.approved = False
            self.touch()
            return Outcome(route=True, push=True, send_presence="unavailable")
        if item is not None and item.approved:
            item.approved = False
            self.touch()
            return Outcome(route=True, push=True)
        if denied:
            self.touch()
        return Outcome(route=True)

    # -- what the user receives (inbound, §3.1.3, §3.1.6, §3.2.3, §3.3.3) -------------------------

    def inbound_subscribe(self, contact: str, request: str) -> Outcome:
        """§3.1.3: auto-answer if already subscribed or pre-approved, else keep and deliver."""
        item = self.items.get(contact)
        if item is not None and item.has_from:
            return Outcome(reply="subscribed", send_presence="available")
        if item is not None and item.approved:
            item._set(item.has_to, True)
            item.approved = False
            self.touch()
            return Outcome(push=True, reply="subscribed", send_presence="available")
        self.pending_in[contact] = request
        return Outcome(route=True)

    def inbound_subscribed(self, contact: str) -> Outcome:
        """§3.1.6: only an approval the user asked for (``ask``) counts; others are ignored."""
        item = self.items.get(contact)
        if item is None or not item.ask:
            return IGNORE
        item._set(True, item.has_from)
        item.ask = False
        self.touch()
        return Outcome(route=True, push=True)

    def inbound_unsubscribe(self, contact: str) -> Outcome:
        """§3.3.3: the contact stops receiving the user's presence, or withdraws its request."""
        item = self.items.get(contact)
        withdrawn = self.pending_in.pop(contact, None) is not None
        if item is not None and item.has_from:
            item._set(item.has_to, False)
            self.touch()
            return Outcome(route=True, push=True)
        return Outcome(route=True) if withdrawn else IGNORE

    def inbound_unsubscribed(self, contact: str) -> Outcome:
        """§3.2.3: the contact cancelled (or denied) the user's subscription to it."""
        item = self.items.get(contact)
        if item is None or not (item.has_to or item.ask):
            return IGNORE
        item._set(False, item.has_from)
        item.ask = False
        self.touch()
        return Outcome(route=True, push=True)

    # -- presence fan-out ------------------------------------------------------------------------

    def subscribers(self) -> list[str]:
        """Contacts that receive the user's presence broadcasts (§4.2.2: from or both)."""
        return [jid for jid, item in self.items.items() if item.has_from]

    def subscriptions(self) -> list[str]:
        """Contacts whose presence the user receives, probed at initial presence (§4.2.2)."""
        return [jid for jid, item in self.items.items() if item.has_to]

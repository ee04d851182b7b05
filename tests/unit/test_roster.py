"""The RFC 6121 §3 subscription state machine, state by state, and the roster document format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.xmpp.roster import IGNORE, Outcome, Roster, RosterError, RosterItem

C = "contact@example.net"


def roster_in(state: str) -> Roster:
    """A roster whose item for C is in ``state``: 'absent', or a subscription with '+ask',
    '+in' (pending inbound request) and '+approved' suffixes, e.g. 'from+ask'."""
    roster = Roster()
    parts = state.split("+")
    if parts[0] != "absent":
        roster.items[C] = RosterItem(C, subscription=parts[0], ask="ask" in parts, approved="approved" in parts)
    if "in" in parts:
        roster.pending_in[C] = "<presence type='subscribe'/>"
    return roster


def state_of(roster: Roster) -> str:
    item = roster.get(C)
    parts = ["absent" if item is None else item.subscription]
    if item is not None and item.ask:
        parts.append("ask")
    if C in roster.pending_in:
        parts.append("in")
    if item is not None and item.approved:
        parts.append("approved")
    return "+".join(parts)


# (state before, method, state after, outcome), after RFC 6121 §3 and its Appendix A tables.
TRANSITIONS = [
    # §3.1.2 outbound subscribe
    ("absent", "outbound_subscribe", "none+ask", Outcome(route=True, push=True)),
    ("none", "outbound_subscribe", "none+ask", Outcome(route=True, push=True)),
    ("from", "outbound_subscribe", "from+ask", Outcome(route=True, push=True)),
    ("none+ask", "outbound_subscribe", "none+ask", Outcome(route=True)),
    ("to", "outbound_subscribe", "to", Outcome(route=True)),
    # §3.1.3 inbound subscribe
    ("absent", "inbound_subscribe", "absent+in", Outcome(route=True)),
    ("to", "inbound_subscribe", "to+in", Outcome(route=True)),
    ("from", "inbound_subscribe", "from", Outcome(reply="subscribed", send_presence="available")),
    ("both", "inbound_subscribe", "both", Outcome(reply="subscribed", send_presence="available")),
    ("none+approved", "inbound_subscribe", "from",
     Outcome(push=True, reply="subscribed", send_presence="available")),
    # §3.1.5 outbound subscribed (approval), §3.4 pre-approval
    ("absent+in", "outbound_subscribed", "from", Outcome(route=True, push=True, send_presence="available")),
    ("to+in", "outbound_subscribed", "both", Outcome(route=True, push=True, send_presence="available")),
    ("none+ask+in", "outbound_subscribed", "from+ask", Outcome(route=True, push=True, send_presence="available")),
    ("absent", "outbound_subscribed", "none+approved", Outcome(push=True)),
    ("to", "outbound_subscribed", "to+approved", Outcome(push=True)),
    ("none+approved", "outbound_subscribed", "none+approved", IGNORE),
    ("from", "outbound_subscribed", "from", IGNORE),
    # §3.1.6 inbound subscribed
    ("none+ask", "inbound_subscribed", "to", Outcome(route=True, push=True)),
    ("from+ask", "inbound_subscribed", "both", Outcome(route=True, push=True)),
    ("none", "inbound_subscribed", "none", IGNORE),
    ("absent", "inbound_subscribed", "absent", IGNORE),
    ("to", "inbound_subscribed", "to", IGNORE),
    # §3.2.2 outbound unsubscribed (cancel, deny, drop pre-approval)
    ("from", "outbound_unsubscribed", "none", Outcome(route=True, push=True, send_presence="unavailable")),
    ("both", "outbound_unsubscribed", "to", Outcome(route=True, push=True, send_presence="unavailable")),
    ("absent+in", "outbound_unsubscribed", "absent", Outcome(route=True)),
    ("none+approved", "outbound_unsubscribed", "none", Outcome(route=True, push=True)),
    ("to", "outbound_unsubscribed", "to", Outcome(route=True)),
    # §3.2.3 inbound unsubscribed
    ("to", "inbound_unsubscribed", "none", Outcome(route=True, push=True)),
    ("both", "inbound_unsubscribed", "from", Outcome(route=True, push=True)),
    ("none+ask", "inbound_unsubscribed", "none", Outcome(route=True, push=True)),
    ("from", "inbound_unsubscribed", "from", IGNORE),
    ("absent", "inbound_unsubscribed", "absent", IGNORE),
    # §3.3.2 outbound unsubscribe
    ("to", "outbound_unsubscribe", "none", Outcome(route=True, push=True)),
    ("both", "outbound_unsubscribe", "from", Outcome(route=True, push=True)),
    ("none+ask", "outbound_unsubscribe", "none", Outcome(route=True, push=True)),
    ("from", "outbound_unsubscribe", "from", Outcome(route=True)),
    # §3.3.3 inbound unsubscribe
    ("from", "inbound_unsubscribe", "none", Outcome(route=True, push=True)),
    ("both", "inbound_unsubscribe", "to", Outcome(route=True, push=True)),
    ("absent+in", "inbound_unsubscribe", "absent", Outcome(route=True)),
    ("to", "inbound_unsubscribe", "to", IGNORE),
]


class SubscriptionStateTests(SynchronousTestCase):
    def test_transitionsFollowRfc6121(self) -> None:
        """
        If each subscription stanza is applied to each listed state, the item ends in the state
        RFC 6121 §3 prescribes and the outcome says what to route, push, answer and send.
        """
        for before, method, after, outcome in TRANSITIONS:
            roster = roster_in(before)
            version = roster.version
            if method == "inbound_subscribe":
                result = roster.inbound_subscribe(C, "<presence type='subscribe'/>")
            else:
                result = getattr(roster, method)(C)
            self.assertEqual((state_of(roster), result), (after, outcome), f"{method} in {before}")
            if outcome.push:
                self.assertGreater(roster.version, version, f"{method} in {before} bumps the version")

    def test_fanOutLists(self) -> None:
        """
        If a roster has items in every state, broadcasts go to from/both and probes to to/both.
        """
        roster = Roster({j: RosterItem(j, subscription=j.split("@")[0]) for j in
                         ("none@x", "to@x", "from@x", "both@x")})
        self.assertEqual(sorted(roster.subscribers()), ["both@x", "from@x"])
        self.assertEqual(sorted(roster.subscriptions()), ["both@x", "to@x"])


class RosterDocumentTests(SynchronousTestCase):
    def test_setItemValidation(self) -> None:
        """
        If a roster set has a duplicate, empty or oversized group, too many groups, an oversized
        name, or would pass the item limit, RosterError carries the RFC 6121 §2.3.3 condition.
        """
        roster = Roster()
        cases = [
            ((None, ["a", "a"]), "bad-request"),
            ((None, [""]), "not-acceptable"),
            ((None, ["g" * 1024]), "not-acceptable"),
            ((None, [str(n) for n in range(65)]), "not-acceptable"),
            (("n" * 1024, []), "not-acceptable"),
        ]
        for (name, groups), condition in cases:
            with self.assertRaises(RosterError) as raised:
                roster.set_item(C, name, groups, max_items=10)
            self.assertEqual(raised.exception.condition, condition)
        roster.set_item("a@x", None, [], max_items=1)
        with self.assertRaises(RosterError) as raised:
            roster.set_item("b@x", None, [], max_items=1)
        self.assertEqual(raised.exception.condition, "resource-constraint")
        self.assertEqual(list(roster.items), ["a@x"])

    def test_setKeepsSubscription(self) -> None:
        """
        If a roster set renames a contact the user is subscribed to, the subscription and ask
        states do not change (clients cannot set them).
        """
        roster = roster_in("to+ask")
        item = roster.set_item(C, "Contact", ["Work"], max_items=10)
        self.assertEqual((item.subscription, item.ask, item.name, item.groups), ("to", True, "Contact", ["Work"]))

    def test_hostileDocumentsLoadAsEmptyOrSane(self) -> None:
        """
        If the stored document is not a dict or has an unknown subscription value, it loads as an
        empty roster or with subscription 'none', never raising.
        """
        for data in (None, [], "x", 3):
            self.assertEqual(Roster.from_json(data), Roster())
        roster = Roster.from_json({"items": {C: {"subscription": "everything"}}, "version": 7})
        self.assertEqual((roster.get(C).subscription, roster.version), ("none", 7))


_items = st.builds(
    RosterItem, st.just(C), st.none() | st.text(max_size=20), st.lists(st.text(min_size=1, max_size=5), max_size=3),
    st.sampled_from(["none", "to", "from", "both"]), st.booleans(), st.booleans())


@given(_items, st.dictionaries(st.sampled_from([C, "x@y"]), st.text(max_size=30)), st.integers(0, 2**31))
def test_documentRoundTrips(item: RosterItem, pending: dict[str, str], version: int) -> None:
    """
    If any roster is encoded and decoded, the result equals the original.
    """
    roster = Roster({C: item}, pending, version)
    assert Roster.from_json(roster.to_json()) == roster

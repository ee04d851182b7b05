"""MUC vocabulary: RFC 8266 nicknames (corpus vectors), affiliations and roles, config documents,
the per-occupant token bucket, and XEP-0082 time stamps."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.muc.model import Affiliation, InvalidNick, Nick, Role, RoomConfig, TokenBucket, prepare_nick
from unirtc.muc.stanzas import format_stamp, parse_stamp
from unirtc.xmpp.stanzas import StanzaError

VECTORS = json.loads((Path(__file__).parent.parent / "corpora" / "xmpp_jid" / "muc_nickname_vectors.json")
                     .read_text(encoding="utf-8"))


class NicknameTests(SynchronousTestCase):
    def test_equivalenceVectors(self) -> None:
        """
        If two nicknames are compared, they are the same occupant exactly when the corpus says
        so, and the comparison key is the corpus's enforced form.
        """
        for case in VECTORS["equivalence"]:
            a, b = Nick.prepare(case["a"]), Nick.prepare(case["b"])
            self.assertEqual(a.key == b.key, case["same_nickname"], case["why"])
            self.assertEqual((a.key, b.key), (case["enforced_a"], case["enforced_b"]), case["why"])

    def test_rejectVectors(self) -> None:
        """
        If a nickname is in the corpus's must-reject list, preparing it raises InvalidNick,
        which the room reports as jid-malformed.
        """
        for case in VECTORS["must_reject"]:
            self.assertRaises(InvalidNick, Nick.prepare, case["nick"])
            error = self.assertRaises(StanzaError, prepare_nick, case["nick"])
            self.assertEqual(error.condition, "jid-malformed")

    def test_shownFormKeepsCase(self) -> None:
        """
        If a nickname is prepared, the shown form keeps its case but is normalised (spaces
        trimmed, width folded); a missing nickname is jid-malformed.
        """
        self.assertEqual(Nick.prepare(" Ｂob ").text, "Bob")
        self.assertEqual(self.assertRaises(StanzaError, prepare_nick, None).condition, "jid-malformed")

    def test_oversizedNickname(self) -> None:
        """
        If a nickname is longer than a resourcepart may be, it is InvalidNick before any
        Unicode work is done.
        """
        self.assertRaises(InvalidNick, Nick.prepare, "x" * 100_000)
        self.assertEqual(Nick.prepare("x" * 1023).key, "x" * 1023)


@given(st.text(max_size=40))
def test_nickPreparationOnlyRaisesInvalidNick(text: str) -> None:
    """
    Whatever text a nickname is, preparing it gives an idempotent key or raises InvalidNick.
    """
    try:
        nick = Nick.prepare(text)
    except InvalidNick:
        return
    assert Nick.prepare(nick.text).key == nick.key


class EnumTests(SynchronousTestCase):
    def test_parseAndRank(self) -> None:
        """
        If an affiliation or role is named on the wire it parses to the ranked value; unknown
        names are ValueError.
        """
        self.assertEqual(Affiliation.parse("owner"), Affiliation.OWNER)
        self.assertLess(Affiliation.OUTCAST, Affiliation.NONE)
        self.assertEqual(Role.parse("visitor").wire, "visitor")
        for bad in ("Owner", "", "root"):
            self.assertRaises(ValueError, Affiliation.parse, bad)
            self.assertRaises(ValueError, Role.parse, bad)


class RoomConfigTests(SynchronousTestCase):
    def test_jsonRoundTrip(self) -> None:
        """
        If a configuration goes through JSON, it comes back equal; unknown keys are dropped
        and values of the wrong type keep the default.
        """
        config = RoomConfig(name="Ops", persistent=True, max_users=30, whois="anyone")
        self.assertEqual(RoomConfig.from_json(json.loads(json.dumps(config.as_json()))), config)
        odd = RoomConfig.from_json({"name": 5, "persistent": "yes", "bogus": 1, "max_history": 7})
        self.assertEqual((odd.name, odd.persistent, odd.max_history), ("", False, 7))

    def test_passwordNeedsBothSettings(self) -> None:
        """
        If a room is marked password-protected without a password (or the reverse), entry is
        not password-locked.
        """
        self.assertFalse(RoomConfig(password_protected=True).locked_by_password)
        self.assertFalse(RoomConfig(password="x").locked_by_password)
        self.assertTrue(RoomConfig(password_protected=True, password="x").locked_by_password)


class TokenBucketTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        """
        If messages come faster than the rate, the burst passes and then one message per
        1/rate seconds; a clock going backwards refills nothing.
        """
        bucket = TokenBucket(rate=2.0, burst=3)
        self.assertEqual([bucket.allow(10.0) for _ in range(4)], [True, True, True, False])
        self.assertTrue(bucket.allow(10.5))
        self.assertFalse(bucket.allow(10.6))
        self.assertFalse(bucket.allow(5.0))


class StampTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        """
        If a time is formatted as a XEP-0082 DateTime and parsed back, it is the same instant;
        offsets are honoured.
        """
        self.assertEqual(format_stamp(0), "1970-01-01T00:00:00Z")
        self.assertEqual(parse_stamp(format_stamp(1234.5)), 1234.5)
        self.assertEqual(parse_stamp("1970-01-01T01:00:00+01:00"), 0.0)

    def test_malformed(self) -> None:
        """
        If a stamp is not a DateTime, has no zone or is huge, parse_stamp raises ValueError.
        """
        for bad in ("yesterday", "2020-01-01", "2020-01-01T00:00:00", "2" * 100, "2020-13-01T00:00:00Z"):
            self.assertRaises(ValueError, parse_stamp, bad)

"""Tests for unirtc.turn.credentials: TURN REST credentials (coturn use-auth-secret) and long-term keys."""

from __future__ import annotations

import json
import pathlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.turn.credentials import check_rest_credentials, long_term_key, rest_credentials
from unirtc.turn.stun import Method, StunError, parse_message

VECTORS = json.loads(
    (pathlib.Path(__file__).parent.parent / "corpora" / "turn_rest" / "turn_rest_vectors.json").read_text()
)
WORKED = VECTORS["worked_example"]
CASES = {case["name"]: case for case in VECTORS["cases"]}
# Where unirtc deliberately differs from coturn's acceptance model (documented in credentials.py).
UNIRTC_VERDICT = {"reversed_order_user_colon_ts": False}


class RestCredentialsTests(SynchronousTestCase):
    """Minting REST credentials."""

    def test_workedExample(self) -> None:
        """
        If secret "north" mints for alice with an expiry of 1700000000, the username is
        "1700000000:alice" and the password the documented base64 HMAC-SHA1.
        """
        expected = (WORKED["username"], WORKED["password"])
        self.assertEqual(rest_credentials(WORKED["secret"], WORKED["user"], 86400, WORKED["expiry"] - 86400), expected)
        self.assertEqual(rest_credentials(WORKED["secret"].encode(), WORKED["user"], 1, WORKED["expiry"] - 0.5), expected)
        self.assertEqual(VECTORS["formula"]["rest response (draft)"]["password"], WORKED["password"])

    def test_refusesToMintNonsense(self) -> None:
        """
        If the ttl is not positive or the user is empty, minting raises ValueError.
        """
        self.assertRaises(ValueError, rest_credentials, "north", "alice", 0, 1700000000)
        self.assertRaises(ValueError, rest_credentials, "north", "alice", -5, 1700000000)
        self.assertRaises(ValueError, rest_credentials, "north", "", 60, 1700000000)


class CheckRestCredentialsTests(SynchronousTestCase):
    """Checking REST credentials against the coturn acceptance model."""

    def test_everyCase(self) -> None:
        """
        If each vector case is checked with the server's secrets, the verdict is coturn's,
        except the reversed "user:expiry" order, which unirtc refuses.
        """
        self.assertEqual(len(CASES), 12)
        for name, case in CASES.items():
            secrets = case.get("server_secrets", case["secret"])
            verdict = check_rest_credentials(secrets, case["username"], case["password"], case["now"])
            self.assertEqual(verdict, UNIRTC_VERDICT.get(name, case["coturn_model_accepts"]), name)

    def test_expiryBoundary(self) -> None:
        """
        If now equals the expiry the credentials are valid; a fraction of a second later they are not.
        """
        case = CASES["basic"]
        self.assertTrue(check_rest_credentials("north", case["username"], case["password"], 1700000000.0))
        self.assertFalse(check_rest_credentials("north", case["username"], case["password"], 1700000000.001))

    def test_maxTtl(self) -> None:
        """
        If max_ttl is given, an expiry further in the future than that is refused.
        """
        case = CASES["far_future_expiry"]
        args = ("north", case["username"], case["password"], case["now"])
        self.assertTrue(check_rest_credentials(*args))
        self.assertFalse(check_rest_credentials(*args, max_ttl=86400))
        self.assertTrue(check_rest_credentials(bytearray(b"north"), *args[1:]))
        basic = CASES["basic"]
        self.assertTrue(check_rest_credentials("north", basic["username"], basic["password"], basic["now"], max_ttl=86400))

    def test_malformed(self) -> None:
        """
        If the username's timestamp is not plain ASCII digits, or the values are not strings,
        the credentials are refused rather than raising.
        """
        now = 1600000000
        for username in ["", ":alice", "+1700000000:alice", " 1700000000:alice", "1_700_000_000:alice",
                         "١٧٠٠٠٠٠٠٠٠:alice", "9" * 30 + ":alice", "1700000000.5:alice"]:
            password = rest_credentials("north", "x", 1, 0)[1]
            self.assertFalse(check_rest_credentials("north", username, password, now), username)
        self.assertFalse(check_rest_credentials("north", None, WORKED["password"], now))  # type: ignore[arg-type]
        self.assertFalse(check_rest_credentials("north", WORKED["username"], b"x", now))  # type: ignore[arg-type]
        self.assertFalse(check_rest_credentials("north", WORKED["username"], "\udcff", now))
        self.assertFalse(check_rest_credentials("north", WORKED["username"], "", now))
        self.assertFalse(check_rest_credentials([], WORKED["username"], WORKED["password"], now))

    def test_signedAllocateRequest(self) -> None:
        """
        If the vectors' Allocate request is parsed, its USERNAME passes the REST check and the
        long-term key derived from it verifies MESSAGE-INTEGRITY; the wrong password does not.
        """
        vector = VECTORS["stun_allocate_request"]
        data = bytes.fromhex(vector["hex"])
        request = parse_message(data)
        self.assertEqual(request.message_method, Method.ALLOCATE)
        self.assertEqual(request.attributes["REQUESTED-TRANSPORT"], 17)
        self.assertEqual(request.attributes["NONCE"], vector["nonce"].encode())
        username, realm = request.attributes["USERNAME"], request.attributes["REALM"]
        self.assertTrue(check_rest_credentials("north", username, WORKED["password"], WORKED["expiry"] - 60))
        parse_message(data, integrity_key=long_term_key(username, realm, WORKED["password"]))
        with self.assertRaisesRegex(StunError, "bad MESSAGE-INTEGRITY"):
            parse_message(data, integrity_key=long_term_key(username, realm, "Cd/49soE35ICqcJF/bCTn8Z4OyF="))


class LongTermKeyTests(SynchronousTestCase):
    """MD5(username:realm:password) keys."""

    def test_restCases(self) -> None:
        """
        If each REST case's username and password form a long-term key with realm example.org,
        it matches the vector.
        """
        for name, case in CASES.items():
            key = long_term_key(case["username"], WORKED["realm"], case["password"])
            self.assertEqual(key.hex(), case["long_term_key_md5_hex"], name)

    def test_rfc5769SaslPrep(self) -> None:
        """
        If the RFC 5769 §2.4 password (soft hyphen, feminine ordinal, roman numeral nine) is
        used, the key is computed from its SASLprep form "TheMatrIX".
        """
        username, realm = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9", "example.org"
        key = long_term_key(username, realm, "The\u00adM\u00aatr\u2168")
        self.assertEqual(key.hex(), "e8ca7ad59d5eb0518e312911d2dab2a9")
        self.assertEqual(key, long_term_key(username, realm, "TheMatrIX"))

    def test_opaqueStringPreferred(self) -> None:
        """
        If OpaqueString accepts a password, it decides the key: NFC composition applies, but
        the compatibility folding of SASLprep does not.
        """
        self.assertEqual(long_term_key("u", "r", "cafe\u0301"), long_term_key("u", "r", "caf\u00e9"))
        self.assertNotEqual(long_term_key("u", "r", "\u00aa"), long_term_key("u", "r", "a"))

    def test_prohibitedPassword(self) -> None:
        """
        If neither OpaqueString nor SASLprep accepts a password (a control character,
        mixed-direction text), deriving a key raises ValueError.
        """
        for password in ["bell\u0007", "\u00ad\u05d0abc", "\u00ad\u05d01"]:
            self.assertRaises(ValueError, long_term_key, "u", "r", password)


@given(st.text(min_size=1, max_size=40), st.integers(1, 10**6), st.integers(0, 2**33), st.binary(min_size=1, max_size=64))
def test_mintedCredentialsCheckUntilExpiry(user: str, ttl: int, now: int, secret: bytes) -> None:
    """If credentials are minted, they check at now and at expiry, never after, nor with another password."""
    username, password = rest_credentials(secret, user, ttl, now)
    assert check_rest_credentials(secret, username, password, now)
    assert check_rest_credentials(secret, username, password, now + ttl)
    assert not check_rest_credentials(secret, username, password, now + ttl + 1)
    assert not check_rest_credentials(secret, username, password[::-1] + "x", now)

"""Tests for unirtc.sip.digest: RFC vectors, challenges, nonces, replay, throttling, hostile input."""

from __future__ import annotations

import hashlib
import json
import pathlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_auth_helpers import (
    HASHLIB,
    NOW,
    FakeDirectory,
    authorization,
    challenges,
    request,
    with_header,
)
from tests.unit.sip_auth_helpers import settings as sip_settings
from unirtc.sip.digest import (
    MAX_CREDENTIALS,
    AuthResult,
    DigestAuthenticator,
    DigestParseError,
    NonceCounts,
    Nonces,
    NonceState,
    compute_response,
    domain_map,
    parse_credentials,
)
from unirtc.throttle import FailureThrottle

VECTORS = json.loads(
    (pathlib.Path(__file__).parent.parent / "corpora" / "sip_digest" / "digest_vectors.json").read_text()
)["vectors"]
SECRET = b"k" * 32


def _ha1(vector: dict) -> str:
    name = HASHLIB[vector["algorithm"].upper().removesuffix("-SESS")]
    text = f'{vector["username"]}:{vector["realm"]}:{vector["password"]}'
    return hashlib.new(name, text.encode()).hexdigest()


class VectorTests(SynchronousTestCase):
    def test_corpusVectors(self) -> None:
        """
        If compute_response is given each corpus vector's inputs, it returns the expected
        response, HA1 and HA2 hold where the corpus lists them, and the erratum value printed
        in RFC 7616 §3.9.2 (truncated SHA-512) is not reproduced.
        """
        checked = 0
        for name, vector in VECTORS.items():
            if vector.get("userhash") and "correct" not in name and not vector.get("truncated_sha512"):
                continue
            response = compute_response(
                vector["algorithm"], _ha1(vector), vector["nonce"], vector["method"], vector["uri"],
                qop=vector.get("qop"), nc=vector.get("nc"), cnonce=vector.get("cnonce"),
                body=vector.get("body", "").encode(),
            )
            if vector.get("truncated_sha512"):
                self.assertNotEqual(response, vector["expected_response"], name)
                continue
            self.assertEqual(response, vector["expected_response"], name)
            if "HA1" in vector and not vector["algorithm"].upper().endswith("-SESS"):
                self.assertEqual(_ha1(vector), vector["HA1"], name)
            checked += 1
        self.assertGreaterEqual(checked, 8)

    def test_unknownAlgorithmRefused(self) -> None:
        """
        If compute_response is asked for an algorithm it does not know, it raises ValueError.
        """
        self.assertRaises(ValueError, compute_response, "SHA-1", "x", "n", "REGISTER", "sip:x")


class ParseCredentialsTests(SynchronousTestCase):
    def test_quotedAndTokenValues(self) -> None:
        """
        If a Digest header mixes quoted and token values, odd spacing and escaped quotes, every
        parameter comes back unquoted with a lowercased name.
        """
        parsed = parse_credentials(
            'Digest  username="jo\\"e" ,REALM = "falcot.com",nc=00000001,  qop="auth",,'
        )
        self.assertEqual(parsed.scheme, "Digest")
        self.assertEqual(parsed.params, {"username": 'jo"e', "realm": "falcot.com",
                                         "nc": "00000001", "qop": "auth"})

    def test_otherSchemeNotParsed(self) -> None:
        """
        If the scheme is not Digest (Basic with a token68), the value is not parsed as params.
        """
        parsed = parse_credentials("Basic am9lOnB3ZA==")
        self.assertEqual((parsed.scheme, parsed.params), ("Basic", {}))

    def test_malformedHeadersRaiseTheModuleError(self) -> None:
        """
        If a header is malformed (unbalanced quotes, missing values, duplicates, junk, no
        scheme, too many parameters, oversized), parse_credentials raises DigestParseError.
        """
        cases = [
            'Digest username="joe',
            'Digest username="joe\\',
            "Digest username",
            "Digest username=",
            'Digest username="a", username="b"',
            'Digest username="a" realm="b"',
            "Digest username=<sip:x>",
            'Digest username="a\x01b"',
            "",
            "=x",
            "Digest,username=x",
            "Digest " + ", ".join(f"p{i}=x" for i in range(40)),
            'Digest username="' + "a" * MAX_CREDENTIALS + '"',
        ]
        for case in cases:
            with self.assertRaises(DigestParseError, msg=case) as caught:
                parse_credentials(case)
            self.assertEqual(caught.exception.status, 400)


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_parseCredentialsOnlyRaisesDigestParseError(text: str) -> None:
    """
    If any text is parsed as credentials, the only exception is DigestParseError.
    """
    try:
        parse_credentials(text)
    except DigestParseError:
        pass


class NonceTests(SynchronousTestCase):
    def test_freshExpiredForeignAndFuture(self) -> None:
        """
        If a nonce is checked, it is valid within its ttl, expired after it, invalid under
        another key or realm, when tampered with, or when issued in the future.
        """
        nonces = Nonces(SECRET, ttl=300)
        nonce = nonces.make("falcot.com", NOW)
        self.assertEqual(nonces.check(nonce, "falcot.com", NOW + 299)[0], NonceState.VALID)
        self.assertEqual(nonces.check(nonce, "falcot.com", NOW + 301)[0], NonceState.EXPIRED)
        self.assertEqual(nonces.check(nonce, "example.org", NOW)[0], NonceState.INVALID)
        self.assertEqual(Nonces(b"o" * 32).check(nonce, "falcot.com", NOW)[0], NonceState.INVALID)
        tampered = ("A" if nonce[0] != "A" else "B") + nonce[1:]
        self.assertEqual(nonces.check(tampered, "falcot.com", NOW)[0], NonceState.INVALID)
        self.assertEqual(nonces.check(nonce, "falcot.com", NOW - 60)[0], NonceState.INVALID)
        for junk in ("", "x" * 43, "!" * 43, nonce + "A"):
            self.assertEqual(nonces.check(junk, "falcot.com", NOW)[0], NonceState.INVALID)

    def test_noncesAreUnique(self) -> None:
        """
        If two nonces are made at the same instant, they differ (nonce-counts are per nonce).
        """
        nonces = Nonces(SECRET)
        self.assertNotEqual(nonces.make("falcot.com", NOW), nonces.make("falcot.com", NOW))

    def test_shortKeyRefused(self) -> None:
        """
        If the key is shorter than 16 bytes, Nonces refuses it.
        """
        self.assertRaises(ValueError, Nonces, b"short")


class NonceCountTests(SynchronousTestCase):
    def test_windowAcceptsEachCountOnce(self) -> None:
        """
        If counts arrive out of order within the window each is accepted once; repeats, zero,
        and counts older than the window are refused.
        """
        counts = NonceCounts(ttl=300)
        self.assertTrue(counts.accept("n", NOW, 1, NOW))
        self.assertFalse(counts.accept("n", NOW, 1, NOW))
        self.assertTrue(counts.accept("n", NOW, 5, NOW))
        self.assertTrue(counts.accept("n", NOW, 3, NOW))
        self.assertFalse(counts.accept("n", NOW, 3, NOW))
        self.assertTrue(counts.accept("n", NOW, 200, NOW))
        self.assertFalse(counts.accept("n", NOW, 100, NOW))
        self.assertFalse(counts.accept("n", NOW, 0, NOW))
        self.assertFalse(counts.accept("m", NOW, 2**32, NOW))

    def test_boundedAndSafeWhenFull(self) -> None:
        """
        If more live nonces are used than the table holds, it stays bounded, and a forgotten
        nonce (or any unseen nonce issued no later) is refused rather than replayable.
        """
        counts = NonceCounts(ttl=300, max_nonces=3)
        for i in range(5):
            self.assertTrue(counts.accept(f"n{i}", NOW + i, 1, NOW + i))
        self.assertEqual(len(counts), 3)
        self.assertFalse(counts.accept("n0", NOW, 1, NOW + 5))
        self.assertFalse(counts.accept("unseen", NOW + 1, 1, NOW + 5))
        self.assertTrue(counts.accept("n4", NOW + 4, 2, NOW + 5))
        self.assertTrue(counts.accept("late", NOW + 5, 1, NOW + 5))

    def test_expiredEntriesPruned(self) -> None:
        """
        If nonces are older than the ttl, they are forgotten on the next insertion.
        """
        counts = NonceCounts(ttl=300)
        counts.accept("old", NOW, 1, NOW)
        counts.accept("new", NOW + 400, 1, NOW + 400)
        self.assertEqual(len(counts), 1)


class AuthenticatorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.directory = FakeDirectory()
        self.directory.add("joe")
        self.auth = DigestAuthenticator(
            self.directory, SECRET, self.clock, domain_map(sip_settings()),
            address_throttle=FailureThrottle(free_failures=4),
            account_throttle=FailureThrottle(free_failures=2),
        )

    def challenge(self, req=None, proxy: bool = False, index: int = 0) -> dict[str, str]:
        return challenges(self.auth.challenge(req or request(), proxy=proxy), proxy)[index]

    def verify(self, req, proxy: bool = False, source=("192.0.2.10", 5060)) -> AuthResult:
        return self.successResultOf(self.auth.verify(req, proxy=proxy, source=source))

    def signed(self, req=None, source=("192.0.2.10", 5060), index: int = 0, **kwargs) -> AuthResult:
        return self.successResultOf(self.signing(req, source, index, **kwargs))

    def signing(self, req=None, source=("192.0.2.10", 5060), index: int = 0, **kwargs):
        """verify() on a request answering a fresh challenge; the Deferred may be held back."""
        req = req or request()
        value = authorization(self.challenge(req, index=index), req, **kwargs)
        return self.auth.verify(with_header(req, "Authorization", value), source=source)


class ChallengeTests(AuthenticatorTestCase):
    def test_md5FirstThenSha256(self) -> None:
        """
        If a REGISTER is challenged, the 401 carries an MD5 then a SHA-256 challenge with
        qop="auth" in the account domain, and adds a To tag.
        """
        response = self.auth.challenge(request(to="<sip:joe@sip.falcot.com>"))
        self.assertEqual(response.status, 401)
        values = response.headers.get_all("WWW-Authenticate")
        self.assertEqual([c["algorithm"] for c in challenges(response)], ["MD5", "SHA-256"])
        self.assertTrue(all('qop="auth"' in v and 'realm="falcot.com"' in v for v in values))
        self.assertIsNotNone(response.to.tag)
        self.assertNotIn("stale", values[0])

    def test_proxyChallengeUsesFromDomain(self) -> None:
        """
        If an INVITE is challenged for the proxy, the 407 carries Proxy-Authenticate in the
        realm of the From domain.
        """
        invite = request("INVITE", "sip:ann@example.org", to="<sip:ann@example.org>")
        response = self.auth.challenge(invite, proxy=True)
        self.assertEqual(response.status, 407)
        self.assertEqual(challenges(response, proxy=True)[1]["realm"], "falcot.com")
        self.assertEqual(response.headers.get_all("WWW-Authenticate"), [])

    def test_unservedDomainForbidden(self) -> None:
        """
        If neither the To domain nor the Request-URI is served, challenge answers 403.
        """
        req = request(uri="sip:example.org", to="<sip:joe@example.org>")
        self.assertEqual(self.auth.challenge(req).status, 403)
        self.assertEqual(self.verify(req).status, 403)


class VerifyTests(AuthenticatorTestCase):
    def test_bothUsernameFormsAndAlgorithms(self) -> None:
        """
        If joe answers with username joe or joe@falcot.com, under MD5 or SHA-256, he is
        authenticated as the account (joe, falcot.com).
        """
        for username in ("joe", "joe@falcot.com"):
            for index in (0, 1):
                result = self.signed(username=username, index=index)
                self.assertEqual(result, AuthResult(("joe", "falcot.com")), (username, index))

    def test_absentAlgorithmMeansMd5(self) -> None:
        """
        If the credentials carry no algorithm parameter, MD5 is assumed and they verify.
        """
        self.assertEqual(self.signed(omit_algorithm=True).account, ("joe", "falcot.com"))

    def test_wrongPasswordGetsNewChallenge(self) -> None:
        """
        If the password is wrong, no account is returned and the response is a fresh 401.
        """
        req = request()
        result = self.signed(req, password="wrong")
        self.assertEqual(result, AuthResult(None))
        self.assertEqual(self.auth.respond(req, result).status, 401)

    def test_usernameFormMustMatchItsHa1(self) -> None:
        """
        If the digest username differs from the one the HA1 was computed with (joe vs
        joe@falcot.com, a foreign domain, another case), verification fails.
        """
        req = request()
        challenge = self.challenge(req)
        value = authorization(challenge, req, username="joe@falcot.com")
        value = value.replace('username="joe@falcot.com"', 'username="joe"')
        self.assertIsNone(self.verify(with_header(req, "Authorization", value)).account)
        self.assertIsNone(self.signed(username="joe@example.org").account)
        self.assertIsNone(self.signed(username="Joe").account)
        self.assertIsNone(self.signed(username="nobody").account)

    def test_expiredNonceIsStale(self) -> None:
        """
        If the right password answers a nonce older than its ttl, the result is stale and the
        new challenge says stale=true; a wrong password on it is not stale.
        """
        req = request()
        good = with_header(req, "Authorization", authorization(self.challenge(req), req))
        bad = with_header(req, "Authorization",
                          authorization(self.challenge(req), req, password="nope"))
        self.clock.advance(301)
        result = self.verify(good)
        self.assertEqual(result, AuthResult(None, stale=True))
        response = self.auth.respond(req, result)
        self.assertEqual(response.status, 401)
        self.assertTrue(all("stale=true" in v for v in response.headers.get_all("WWW-Authenticate")))
        self.assertFalse(self.verify(bad).stale)

    def test_replayIsRefused(self) -> None:
        """
        If the same credentials (same nonce and nc) are sent twice, the second is stale; the
        next nc under the same nonce is accepted.
        """
        req = request()
        challenge = self.challenge(req)
        first = with_header(req, "Authorization", authorization(challenge, req))
        self.assertIsNotNone(self.verify(first).account)
        self.assertEqual(self.verify(first), AuthResult(None, stale=True))
        second = with_header(req, "Authorization", authorization(challenge, req, nc="00000002"))
        self.assertIsNotNone(self.verify(second).account)

    def test_unofferedAlgorithmOrQopChallengedAgain(self) -> None:
        """
        If the credentials use an algorithm or qop that was not offered, the result is a plain
        new challenge (nothing to count as a failure).
        """
        req = request()
        challenge = self.challenge(req)
        sha512 = authorization(challenge, req, algorithm="SHA-512-256")
        auth_int = authorization(challenge, req).replace("qop=auth", "qop=auth-int")
        for value in (sha512, auth_int, authorization(challenge, req).replace("MD5", "FOO")):
            self.assertEqual(self.verify(with_header(req, "Authorization", value)), AuthResult(None))

    def test_uriMustNameTheRequestUri(self) -> None:
        """
        If the uri parameter names another URI the result is 400; an equivalent spelling of
        the Request-URI is accepted.
        """
        self.assertEqual(self.signed(uri="sip:example.org").status, 400)
        self.assertEqual(self.signed(uri="sip:FALCOT.COM").account, ("joe", "falcot.com"))

    def test_otherRealmOrSchemeIgnored(self) -> None:
        """
        If the only credentials are for another realm or another scheme, the result is a new
        challenge; credentials for our realm are found among several headers.
        """
        req = request()
        challenge = self.challenge(req)
        foreign = authorization(challenge, req, realm="example.org")
        self.assertEqual(self.verify(with_header(req, "Authorization", foreign)), AuthResult(None))
        basic = with_header(req, "Authorization", "Basic am9lOnB3")
        self.assertEqual(self.verify(basic), AuthResult(None))
        both = with_header(with_header(req, "Authorization", foreign), "Authorization",
                           authorization(challenge, req))
        self.assertEqual(self.verify(both).account, ("joe", "falcot.com"))

    def test_disabledAccountForbiddenOnlyWithThePassword(self) -> None:
        """
        If a disabled account answers with its password the result is 403; with a wrong
        password it is an ordinary new challenge, so the state is not disclosed.
        """
        self.directory.add("joe", disabled=True)
        result = self.signed()
        self.assertEqual((result.account, result.status), (None, 403))
        self.assertEqual(self.auth.respond(request(), result).status, 403)
        self.assertEqual(self.signed(password="wrong"), AuthResult(None))

    def test_proxyAuthorization(self) -> None:
        """
        If an INVITE carries Proxy-Authorization answering a 407, verify(proxy=True) accepts
        it, and Authorization is not read for the proxy.
        """
        invite = request("INVITE", "sip:ann@falcot.com", to="<sip:ann@falcot.com>")
        value = authorization(self.challenge(invite, proxy=True), invite)
        self.assertEqual(self.verify(with_header(invite, "Proxy-Authorization", value), proxy=True).account,
                         ("joe", "falcot.com"))
        value = authorization(self.challenge(invite, proxy=True), invite)
        self.assertEqual(self.verify(with_header(invite, "Authorization", value), proxy=True),
                         AuthResult(None))


class HostileTests(AuthenticatorTestCase):
    def test_malformedCredentialsAre400(self) -> None:
        """
        If the Authorization header is unbalanced, huge, lacks parameters or has bad nc,
        response or qop, the result is 400 and respond() builds a 400.
        """
        req = request()
        good = authorization(self.challenge(req), req)
        cases = [
            'Digest username="joe, realm="falcot.com"',
            'Digest realm="falcot.com", username="' + "j" * 9000 + '"',
            'Digest realm="falcot.com", username="joe"',
            good.replace("nc=00000001", "nc=xyz"),
            good.replace("nc=00000001", "nc=123456789"),
            good.replace(', cnonce="c0ffee"', ""),
            good.replace(", qop=auth", ""),
            good.replace('response="', 'response="zz'),
            good.replace('nonce="', 'nonce="";x="'),
        ]
        for value in cases:
            hostile = with_header(req, "Authorization", value)
            result = self.verify(hostile)
            self.assertEqual((result.account, result.status), (None, 400), value[:80])
            self.assertEqual(self.auth.respond(hostile, result).status, 400)

    def test_garbageNonceWithoutPasswordFails(self) -> None:
        """
        If the nonce is not one of ours and the response is wrong, the result is a failure,
        not stale; with the right password on a forged nonce it is only stale.
        """
        req = request()
        challenge = dict(self.challenge(req), nonce="forged-nonce")
        bad = authorization(challenge, req, password="x")
        self.assertEqual(self.verify(with_header(req, "Authorization", bad)), AuthResult(None))
        good = authorization(challenge, req)
        self.assertEqual(self.verify(with_header(req, "Authorization", good)), AuthResult(None, stale=True))


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n"), max_size=200))
@settings(max_examples=200)
def test_verifyNeverRaisesOnHostileHeaders(text: str) -> None:
    """
    If any single-line text is sent as Authorization, verify yields an AuthResult with no
    account and a status of None (challenge), 400 or 403.
    """
    clock = Clock()
    clock.advance(NOW)
    directory = FakeDirectory()
    directory.add("joe")
    auth = DigestAuthenticator(directory, SECRET, clock, domain_map(sip_settings()))
    req = with_header(request(), "Authorization", "Digest " + text)
    results: list[AuthResult] = []
    auth.verify(req).addCallback(results.append)
    assert len(results) == 1 and results[0].account is None
    assert results[0].status in (None, 400, 403)


class ThrottleTests(AuthenticatorTestCase):
    def test_accountBlockedThenForgiven(self) -> None:
        """
        If joe's password is wrong more often than allowed, the failure that earns a delay is
        answered only after it, later attempts (even right ones) get 403 with Retry-After and
        are not checked, and once the delay has passed the right password works.
        """
        for _ in range(2):
            self.assertEqual(self.signed(password="wrong"), AuthResult(None))
        req = request()
        d = self.auth.verify(with_header(req, "Authorization",
                                         authorization(self.challenge(req), req, password="w")),
                             source=("192.0.2.10", 5060))
        self.assertNoResult(d)
        reads = self.directory.reads
        result = self.signed()
        self.assertEqual((result.status, result.retry_after), (403, 1))
        self.assertEqual(self.directory.reads, reads)
        response = self.auth.respond(req, result)
        self.assertEqual((response.status, response.headers.get("Retry-After")), (403, "1"))
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(d), AuthResult(None))
        self.assertEqual(self.signed().account, ("joe", "falcot.com"))

    def test_knownAddressNotLockedOutByOthers(self) -> None:
        """
        If guessers elsewhere block joe's account, an address joe authenticated from before
        still gets in, while a new address gets 403.
        """
        self.assertIsNotNone(self.signed(source=("198.51.100.7", 5060)).account)
        for i in range(3):
            self.signing(password="wrong", source=(f"203.0.113.{i}", 5060))
        self.assertEqual(self.signed(source=("203.0.113.99", 5060)).status, 403)
        self.assertEqual(self.signed(source=("198.51.100.7", 5060)).account, ("joe", "falcot.com"))

    def test_addressBlockedAcrossAccounts(self) -> None:
        """
        If one address fails against several accounts, the address is blocked for all of them;
        the Via received parameter is the address when no source is given.
        """
        self.directory.add("ann")
        via = "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-9;received=203.0.113.50"
        for name in ("ann", "bob", "carl", "dave", "emma"):
            req = request(to=f"<sip:{name}@falcot.com>", via=via)
            value = authorization(self.challenge(req), req, username=name, password="x")
            self.auth.verify(with_header(req, "Authorization", value))
        req = request(to="<sip:ann@falcot.com>", via=via)
        value = authorization(self.challenge(req), req, username="ann")
        self.assertEqual(self.verify(with_header(req, "Authorization", value), source=None).status, 403)
        self.assertEqual(self.signed(source=("192.0.2.99", 5060)).account, ("joe", "falcot.com"))

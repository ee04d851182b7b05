"""Tests for unirtc.xmpp.jid: RFC 7622 vectors, preparation rules, hostile input."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from unirtc.xmpp.jid import JID, InvalidJID, normalize_domain, normalize_localpart, normalize_resource

CORPUS = Path(__file__).parent.parent / "corpora" / "xmpp_jid"

FINAL_SIGMA = "ς@example.com"
LONG_LABEL = (
    "user@averylongdomainpartisstillvalideventhoughitexceedsthesixtyfourbytelimitofdnslabels"
)


def _load_vectors() -> dict[str, list[dict[str, str]]]:
    with (CORPUS / "jid_vectors.json").open(encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _parts(jid: JID) -> tuple[str | None, str, str | None]:
    return (jid.local, jid.domain, jid.resource)


def _expected(vector: dict[str, str]) -> tuple[str | None, str, str | None]:
    """The corpus writes an absent part as ''; a JID says None."""
    return (vector["localpart"] or None, vector["domainpart"], vector["resourcepart"] or None)


def _error(text: str) -> str:
    try:
        JID.parse(text)
    except InvalidJID as e:
        return str(e)
    raise AssertionError(f"{text!r} was accepted")


class CorpusTests(SynchronousTestCase):
    """
    The jxmpp JID corpus (RFC 7622 Tables 1 and 2, Prosody's spec, jxmpp's
    own cases), as parsed into jid_vectors.json.
    """

    def test_validVectorsParseToExpectedParts(self) -> None:
        """
        If a corpus JID is valid, it parses to the corpus' local, domain and
        resource parts. Two vectors are set aside and tested on their own:
        the final sigma, which the corpus marks as ambiguous (we follow
        RFC 8265), and the 82-octet domain label, which RFC 5890 forbids.
        """
        set_aside = (FINAL_SIGMA, LONG_LABEL)
        vectors = [v for v in _load_vectors()["valid"] if v["input"] not in set_aside]
        self.assertEqual(len(vectors), 20)
        failures = []
        for vector in vectors:
            try:
                got = _parts(JID.parse(vector["input"]))
            except InvalidJID as e:
                failures.append((vector["input"], str(e)))
                continue
            if got != _expected(vector):
                failures.append((vector["input"], got))
        self.assertEqual(failures, [])

    def test_invalidVectorsRaiseInvalidJID(self) -> None:
        """
        If a corpus JID is invalid, parsing it raises InvalidJID.
        """
        vectors = _load_vectors()["invalid"]
        self.assertEqual(len(vectors), 24)
        accepted = []
        for vector in vectors:
            try:
                accepted.append((vector["input"], JID.parse(vector["input"])))
            except InvalidJID:
                pass
        self.assertEqual(accepted, [])

    def test_finalSigmaFollowsRFC8265(self) -> None:
        """
        If a localpart is final sigma, it stays final sigma. The corpus expects
        RFC 7613 case folding ('ς' becomes 'σ') and its note marks the vector
        as ambiguous. RFC 8265 replaced folding with toLowerCase, which leaves
        'ς' alone, so 'ς' and 'σ' are different localparts, while capital
        sigma still lowercases to 'σ'.
        """
        vector = next(v for v in _load_vectors()["valid"] if v["input"] == FINAL_SIGMA)
        self.assertIn("RFC 8265", vector["note"])
        self.assertEqual(JID.parse(FINAL_SIGMA).local, "ς")
        self.assertEqual(JID.parse("Σ@example.com").local, "σ")
        self.assertNotEqual(JID.parse(FINAL_SIGMA), JID.parse("σ@example.com"))
        self.assertEqual(JID.parse("fußball@example.com").local, "fußball")

    def test_overlongDnsLabelIsRejected(self) -> None:
        """
        If a domainpart label is longer than 63 octets, the JID is invalid,
        although jxmpp lists such a JID as valid: RFC 7622 §3.2 requires the
        domainpart to be an IDNA2008 domain name, whose labels (RFC 5890
        §2.3.1, RFC 1034 §3.1) are at most 63 octets.
        """
        self.assertIn(LONG_LABEL, [v["input"] for v in _load_vectors()["valid"]])
        self.assertEqual(_error(LONG_LABEL), "domainpart label longer than 63 bytes")

    def test_rawCorpusMatchesJson(self) -> None:
        """
        If the raw jxmpp files are read, they hold exactly the JIDs and the
        expected parts that jid_vectors.json lists.
        """
        valid = (CORPUS / "jxmpp_jids_valid.txt").read_text(encoding="utf-8")
        invalid = (CORPUS / "jxmpp_jids_invalid.txt").read_text(encoding="utf-8")
        raw_valid = [
            (text, *parts.split("\x1f"))
            for text, parts in re.findall(r"^jid:\n([^\x1e]*)\x1e\n([^\x1e]*)\x1e\n", valid, re.M)
        ]
        raw_invalid = re.findall(r"^invalid jid:\n([^\x1e]*)\x1e\n", invalid, re.M)
        vectors = _load_vectors()
        json_valid = [
            (v["input"], v["localpart"], v["domainpart"], v["resourcepart"])
            for v in vectors["valid"]
        ]
        self.assertEqual(raw_valid, json_valid)
        self.assertEqual(raw_invalid, [v["input"] for v in vectors["invalid"]])


class SplitTests(SynchronousTestCase):
    """
    RFC 7622 §3.1: the first '/' starts the resource; the first '@' before it
    ends the localpart; the split happens before any preparation.
    """

    def test_firstSlashStartsResource(self) -> None:
        """
        If a JID holds several '/' and '@', everything after the first '/' is
        the resource.
        """
        jid = JID.parse("a@b/c/d@e")
        self.assertEqual(_parts(jid), ("a", "b", "c/d@e"))

    def test_domainOnly(self) -> None:
        """
        If there is no '@' before the first '/', there is no localpart.
        """
        self.assertEqual(_parts(JID.parse("example.com")), (None, "example.com", None))
        self.assertEqual(_parts(JID.parse("example.com/a@b")), (None, "example.com", "a@b"))

    def test_emptyPartsAreInvalid(self) -> None:
        """
        If a separator is present but its part is empty, the message names the
        empty part.
        """
        self.assertEqual(_error("@example.com"), "localpart is empty")
        self.assertEqual(_error("a@"), "domainpart is empty")
        self.assertEqual(_error("a@b/"), "resourcepart is empty")
        self.assertEqual(_error(""), "domainpart is empty")
        self.assertEqual(_error("a@."), "domainpart is empty")

    def test_fullwidthAtIsNotASeparator(self) -> None:
        """
        If the localpart holds U+FF20 FULLWIDTH COMMERCIAL AT, it is not split
        on, but width mapping turns it into a forbidden '@'.
        """
        self.assertEqual(
            _error("a\uff20b@example.com"), "localpart contains forbidden character '@'"
        )
        self.assertEqual(JID.parse("example.com/a\uff20b").resource, "a\uff20b")

    def test_nonStringIsATypeError(self) -> None:
        """
        If parse is given bytes, it raises TypeError rather than guessing an
        encoding.
        """
        self.assertRaises(TypeError, JID.parse, b"a@b")
        self.assertRaises(TypeError, JID.make, b"a", "b")


class LocalpartTests(SynchronousTestCase):
    """
    Localparts: PRECIS UsernameCaseMapped plus RFC 7622's forbidden characters.
    """

    def test_caseMappingMakesJidsEqual(self) -> None:
        """
        If two JIDs differ only in case, they are equal and hash equal.
        Lowercasing is Unicode's full toLowerCase, so a word-final capital
        sigma becomes final sigma.
        """
        upper, lower = JID.parse("Joe@Falcot.COM"), JID.parse("joe@falcot.com")
        self.assertEqual(upper, lower)
        self.assertEqual(hash(upper), hash(lower))
        self.assertEqual(str(upper), "joe@falcot.com")
        self.assertEqual(normalize_localpart("Σ"), "σ")
        self.assertEqual(normalize_localpart("ΣΑΣ"), "σας")

    def test_widthMapping(self) -> None:
        """
        If a localpart is written in fullwidth letters, it maps to ASCII.
        """
        self.assertEqual(normalize_localpart("\uff2a\uff4f\uff45"), "joe")

    def test_forbiddenCharacters(self) -> None:
        """
        If a localpart holds one of "&'/:<>@, the message names the character,
        also when it only appears after width mapping.
        """
        for char in "\"&'/:<>@":
            with self.assertRaises(InvalidJID) as caught:
                JID.make(f"a{char}b", "example.com")
            message = f"localpart contains forbidden character {char!r}"
            self.assertEqual(str(caught.exception), message)
        self.assertEqual(_error("a\uff06b@x"), "localpart contains forbidden character '&'")

    def test_precisDisallowedCharacters(self) -> None:
        """
        If a localpart holds a space, control, symbol or compatibility
        character, the message names the code point and the PRECIS reason.
        """
        self.assertEqual(
            _error("foo bar@example.com"),
            "localpart contains disallowed character U+0020 SPACE"
            " (PRECIS UsernameCaseMapped: spaces)",
        )
        self.assertIn("U+0000", _error("a\x00b@example.com"))
        self.assertIn("BLACK CHESS KING", _error("\u265a@example.com"))
        self.assertIn("has_compat", _error("henry\u2163@example.com"))

    def test_bidiRule(self) -> None:
        """
        If a localpart mixes right-to-left and left-to-right letters against
        the Bidi Rule, it is invalid.
        """
        self.assertIn("bidi_rule", _error("\u05d0a@example.com"))
        self.assertEqual(JID.parse("\u05d0\u05d1@example.com").local, "\u05d0\u05d1")

    def test_lengthLimit(self) -> None:
        """
        If a localpart is 1023 octets it is valid; 1024 octets, whether ASCII
        or multi-byte, is too long.
        """
        self.assertEqual(len(JID.make("a" * 1023, "x").local or ""), 1023)
        self.assertEqual(_error("a" * 1024 + "@x"), "localpart longer than 1023 bytes")
        self.assertEqual(_error("é" * 512 + "@x"), "localpart longer than 1023 bytes")

    def test_lengthIsCheckedAfterPreparation(self) -> None:
        """
        If case mapping makes a localpart grow past 1023 octets (U+0130 is two
        octets and lowercases to three), it is too long.
        """
        self.assertEqual(len(normalize_localpart("\u0130" * 341).encode()), 1023)
        self.assertRaises(InvalidJID, normalize_localpart, "\u0130" * 342)


class DomainpartTests(SynchronousTestCase):
    """
    Domainparts: IP literals, or IDNA2008 labels in U-label form.
    """

    def test_trailingDotIsStripped(self) -> None:
        """
        If a domainpart ends with one dot, it is stripped; two dots leave an
        empty label.
        """
        self.assertEqual(JID.parse("a@example.com."), JID.parse("a@example.com"))
        self.assertEqual(normalize_domain("example.com\u3002"), "example.com")
        self.assertEqual(normalize_domain("1.2.3.4."), "1.2.3.4")
        self.assertEqual(normalize_domain("[::1]."), "[::1]")
        self.assertEqual(_error("a@example.com.."), "domainpart contains an empty label")
        self.assertEqual(_error("a@.example.com"), "domainpart contains an empty label")

    def test_ipv6Literal(self) -> None:
        """
        If a domainpart is a bracketed IPv6 address, it is kept in compressed
        lowercase form, with an RFC 6874 zone identifier if any.
        """
        self.assertEqual(JID.parse("a@[::1]").domain, "[::1]")
        self.assertEqual(normalize_domain("[2001:DB8:0:0::1]"), "[2001:db8::1]")
        self.assertEqual(normalize_domain("[fe80::1%eth0]"), "[fe80::1%eth0]")
        for bad in ("[::g]", "[1.2.3.4]", "[]", "[::1", "[::1%]", "[::1%a@b]", "::1", "[v1.x]"):
            self.assertRaises(InvalidJID, normalize_domain, bad)

    def test_ipv4Address(self) -> None:
        """
        If a domainpart is all digits and dots, it must be a dotted-quad IPv4
        address.
        """
        self.assertEqual(normalize_domain("192.168.1.1"), "192.168.1.1")
        self.assertEqual(normalize_domain("\uff11.2.3.4"), "1.2.3.4")
        for bad in ("256.1.1.1", "1.2.3", "01.2.3.4", "1234"):
            with self.assertRaises(InvalidJID) as caught:
                normalize_domain(bad)
            self.assertIn("not a valid IPv4 address", str(caught.exception))

    def test_internationalisedDomain(self) -> None:
        """
        If a domainpart is an IDN, its A-label and mixed-case U-label spellings
        both become the lowercase NFC U-label.
        """
        self.assertEqual(normalize_domain("BÜCHER.de"), "bücher.de")
        self.assertEqual(normalize_domain("XN--BCHER-KVA.de"), "bücher.de")
        self.assertEqual(normalize_domain("bu\u0308cher.de"), "bücher.de")
        self.assertEqual(JID.parse("a@xn--bcher-kva.de"), JID.parse("a@Bücher.DE"))

    def test_labelLengthLimit(self) -> None:
        """
        If a label's A-label is longer than 63 octets, the domainpart is
        invalid, however short its U-label is.
        """
        self.assertEqual(normalize_domain("a" * 63 + ".com"), "a" * 63 + ".com")
        self.assertEqual(_error("x@" + "a" * 64 + ".com"), "domainpart label longer than 63 bytes")
        self.assertEqual(normalize_domain("ü" * 50), "ü" * 50)
        self.assertRaises(InvalidJID, normalize_domain, "üa" * 30)

    def test_totalLengthLimit(self) -> None:
        """
        If a domainpart is longer than 1023 octets, before or after UTS #46
        mapping, it is invalid; 1023 octets is fine.
        """
        domain = ".".join(["a" * 63] * 16)
        self.assertEqual(len(domain), 1023)
        self.assertEqual(normalize_domain(domain), domain)
        self.assertEqual(_error("x@" + domain + "a"), "domainpart longer than 1023 bytes")
        grows = ".".join(["\u01c6" * 10] * 48)
        self.assertLess(len(grows.encode()), 1024)
        self.assertEqual(_error("x@" + grows), "domainpart longer than 1023 bytes")

    def test_disallowedCharacters(self) -> None:
        """
        If a domainpart holds a character that is not allowed in a host name,
        the message names it.
        """
        self.assertEqual(
            _error("a@example.org@example.org"),
            "domainpart contains disallowed character U+0040 COMMERCIAL AT",
        )
        for bad in ("exa mple.com", "under_score.com", "a:b", "\u2603.com", "a\x00b", "<a>"):
            self.assertRaises(InvalidJID, normalize_domain, bad)

    def test_labelRules(self) -> None:
        """
        If a label breaks IDNA2008's hyphen rules or is a fake A-label, it is
        invalid.
        """
        for bad in ("-a.com", "a-.com", "ab--cd.com", "xn--.com", "xn--ls8h.com", "xn---b.de"):
            self.assertRaises(InvalidJID, normalize_domain, bad)


class ResourcepartTests(SynchronousTestCase):
    """
    Resourceparts: PRECIS OpaqueString.
    """

    def test_caseAndSpacesArePreserved(self) -> None:
        """
        If a resource has capitals and spaces, they are kept; non-ASCII spaces
        become U+0020.
        """
        self.assertEqual(JID.parse("a@b/Foo Bar").resource, "Foo Bar")
        self.assertEqual(JID.parse("a@b/Foo\u00a0Bar").resource, "Foo Bar")
        self.assertNotEqual(JID.parse("a@b/Foo"), JID.parse("a@b/foo"))

    def test_controlsAreInvalid(self) -> None:
        """
        If a resource holds a control or format character, it is invalid.
        """
        self.assertIn("U+0007", _error("a@b/x\x07"))
        self.assertIn("ARABIC LETTER MARK", _error("a@b/\u061cx"))

    def test_lengthLimit(self) -> None:
        """
        If a resource is longer than 1023 octets, as received or after NFC
        (U+0958 decomposes from three octets to six), it is invalid.
        """
        self.assertEqual(len(JID.parse("a@b/" + "r" * 1023).resource or ""), 1023)
        self.assertEqual(_error("a@b/" + "r" * 1024), "resourcepart longer than 1023 bytes")
        self.assertEqual(_error("a@b/" + "\u0958" * 341), "resourcepart longer than 1023 bytes")


class JIDTests(SynchronousTestCase):
    """
    The JID value object.
    """

    def test_bareAndFull(self) -> None:
        """
        If a JID has a resource, bare drops it and full keeps it.
        """
        jid = JID.parse("Juliet@Example.com/Balcony")
        self.assertEqual(jid.full, "juliet@example.com/Balcony")
        self.assertEqual(str(jid), jid.full)
        self.assertFalse(jid.is_bare)
        self.assertEqual(jid.bare, JID.parse("juliet@example.com"))
        self.assertTrue(jid.bare.is_bare)
        self.assertEqual(str(jid.bare), "juliet@example.com")
        bare = jid.bare
        self.assertIs(bare.bare, bare)
        self.assertEqual(str(JID.parse("Example.com/R")), "example.com/R")

    def test_makeMatchesParse(self) -> None:
        """
        If the same parts are given to make and to the constructor, the result
        equals parsing the joined string.
        """
        parsed = JID.parse("Joe@Falcot.COM/Phone")
        self.assertEqual(JID.make("Joe", "Falcot.COM", "Phone"), parsed)
        self.assertEqual(JID("JOE", "falcot.com.", "Phone"), parsed)
        self.assertEqual(JID.make(None, "falcot.com"), JID.parse("falcot.com"))

    def test_makeRejectsEmptyParts(self) -> None:
        """
        If make is given an empty string for a part, the part is invalid;
        None means absent.
        """
        self.assertRaises(InvalidJID, JID.make, "", "example.com")
        self.assertRaises(InvalidJID, JID.make, "a", "")
        self.assertRaises(InvalidJID, JID.make, "a", "example.com", "")
        self.assertEqual(JID.make(None, "example.com", None).full, "example.com")

    def test_frozen(self) -> None:
        """
        If code tries to change a JID, it gets FrozenInstanceError.
        """
        jid = JID.parse("a@b")
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, jid, "local", "c")

    def test_normalizeFunctions(self) -> None:
        """
        If the part normalizers are given bad input, they raise InvalidJID;
        good input comes back canonical.
        """
        self.assertEqual(normalize_localpart("Joe"), "joe")
        self.assertEqual(normalize_domain("Falcot.COM."), "falcot.com")
        self.assertRaises(InvalidJID, normalize_localpart, "")
        self.assertRaises(InvalidJID, normalize_domain, "")
        self.assertTrue(issubclass(InvalidJID, ValueError))

    def test_preparedPartsAreRemembered(self) -> None:
        """
        If the same part is prepared again, the remembered result is returned, and a part that
        was rejected is rejected again with the same message (failures are not remembered).
        """
        for normalize, good, bad in ((normalize_localpart, "Roland", "a@b"),
                                     (normalize_domain, "Falcot.COM", "a..b"),
                                     (normalize_resource, "Gajim", "\x00")):
            first = normalize(good)
            hits = normalize.cache_info().hits
            self.assertIs(normalize(good), first)
            self.assertEqual(normalize.cache_info().hits, hits + 1)
            with self.assertRaises(InvalidJID) as once:
                normalize(bad)
            with self.assertRaises(InvalidJID) as again:
                normalize(bad)
            self.assertEqual(str(again.exception), str(once.exception))

    def test_rememberingKeepsTypeErrors(self) -> None:
        """
        If a part is not a string, hashable or not, preparing it still raises TypeError.
        """
        for normalize in (normalize_localpart, normalize_domain, normalize_resource):
            self.assertRaises(TypeError, normalize, b"joe")
            self.assertRaises(TypeError, normalize, None)
            self.assertRaises(TypeError, normalize, ["joe"])


class HostileInputTests(SynchronousTestCase):
    """
    Input an attacker controls must fail fast, with InvalidJID only.
    """

    def test_loneSurrogates(self) -> None:
        """
        If any part holds a lone surrogate, the message names the part.
        """
        self.assertEqual(_error("a\ud800@b"), "localpart contains a lone surrogate at index 1")
        self.assertEqual(_error("a@\udfff"), "domainpart contains a lone surrogate at index 0")
        self.assertEqual(_error("a@b/\ud800"), "resourcepart contains a lone surrogate at index 0")

    def test_hugeInputs(self) -> None:
        """
        If a JID is megabytes long, it is rejected without preparing it, and
        the next valid JID still parses.
        """
        for text in ("a" * 10**6, "@" * 10**6, "/" * 10**6, "a@" + "b" * 10**6, "." * 10**6):
            self.assertRaises(InvalidJID, JID.parse, text)
        self.assertEqual(_error("a" * 2000 + "@b"), "localpart longer than 1023 bytes")
        self.assertEqual(str(JID.parse("a@b/c")), "a@b/c")


_JID_PIECES = st.one_of(
    st.sampled_from(["@", "/", ".", "[", "]", ":", "%", "xn--", "\uff20", "\u3002", "-", " "]),
    st.text(max_size=6),
)
_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=64)  # surrogates included


@settings(deadline=None)
@given(_ANY_TEXT | st.lists(_JID_PIECES).map("".join))
def test_parseRaisesOnlyInvalidJID(text: str) -> None:
    """
    If parse is given any text at all, it returns a JID whose string form
    parses to itself, or raises InvalidJID.
    """
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid


_LOCAL = st.text(
    st.characters(categories=("Lu", "Ll", "Lo", "Nd", "Pd", "Pc", "Sc")), min_size=1, max_size=12
)
_LABEL = st.text(
    st.characters(categories=("Lu", "Ll", "Lo", "Nd"), include_characters="-"),
    min_size=1,
    max_size=10,
)
_DOMAIN = st.lists(_LABEL, min_size=1, max_size=4).map(".".join) | st.sampled_from(
    ["[::1]", "[2001:DB8::1]", "10.0.0.1", "example.com.", "xn--bcher-kva.de"]
)
_RESOURCE = st.text(min_size=1, max_size=20)


@settings(deadline=None)
@given(st.none() | _LOCAL, _DOMAIN, st.none() | _RESOURCE)
def test_validJidsRoundTrip(local: str | None, domain: str, resource: str | None) -> None:
    """
    If parts make a valid JID, its string form parses back to an equal JID,
    the string form is stable, and make on its own parts is the identity.
    """
    try:
        jid = JID.make(local, domain, resource)
    except InvalidJID:
        return
    again = JID.parse(str(jid))
    assert again == jid
    assert str(again) == str(jid)
    assert JID.make(jid.local, jid.domain, jid.resource) == jid
    assert jid.bare == JID.make(jid.local, jid.domain)

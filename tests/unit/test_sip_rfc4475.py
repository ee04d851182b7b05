"""Tests for unirtc.sip.message against the RFC 4475 SIP torture messages."""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.sip_samples import CORPUS, EXPECTED, ROWS, WELL_FORMED, corpus, parsed, req
from unirtc.sip.headers import CSeq
from unirtc.sip.message import SipParseError, SipRequest, SipResponse, error_response, parse
from unirtc.sip.uri import AbsoluteURI, SipURI, parse_uri


class CorpusTests(SynchronousTestCase):
    """The RFC 4475 torture messages, judged against the manifest's outcomes."""

    def test_corpusIsComplete(self) -> None:
        """
        If the corpus is loaded, every manifest row has its file with the right
        sha256, and every file has an expectation here.
        """
        files = {p.name for p in (CORPUS / "messages").glob("*.dat")}
        self.assertEqual(files, set(ROWS))
        self.assertEqual({f"{name}.dat" for name in EXPECTED}, files)
        for name, row in ROWS.items():
            data = (CORPUS / "messages" / name).read_bytes()
            self.assertEqual(hashlib.sha256(data).hexdigest(), row["sha256"], name)

    def test_expectationsAreAllowedByTheManifest(self) -> None:
        """
        If this parser accepts a message, the RFC calls it well-formed or lets
        liberal elements process it; if it rejects one, the manifest lists that
        status (or "drop", for responses).
        """
        for name, status in EXPECTED.items():
            row = ROWS[f"{name}.dat"]
            outcomes = row["acceptable_outcomes"]
            if status is None:
                self.assertTrue(
                    row["verdict"] == "well-formed"
                    or any(outcome.startswith("process") for outcome in outcomes),
                    name,
                )
            else:
                self.assertTrue(
                    any(outcome.startswith(str(status)) for outcome in outcomes)
                    or (row["kind"] == "response" and "drop" in outcomes),
                    name,
                )

    def test_parseOutcomes(self) -> None:
        """
        If each message is parsed as a UDP datagram, it parses or raises
        SipParseError with the expected status, never anything else.
        """
        outcomes = {}
        for name in EXPECTED:
            try:
                parse(corpus(name))
                outcomes[name] = None
            except SipParseError as error:
                outcomes[name] = error.status
        self.assertEqual(outcomes, EXPECTED)

    def test_roundTrip(self) -> None:
        """
        If a well-formed message is serialised and parsed again, it gives the
        same message, byte-identical when serialised once more, and the bytes
        also parse as a stream frame (Content-Length is always written).
        """
        for name in WELL_FORMED:
            first = parsed(name)
            wire = bytes(first)
            second = parse(wire)
            self.assertEqual(type(second), type(first), name)
            self.assertEqual(second.body, first.body, name)
            self.assertEqual(bytes(second), wire, name)
            self.assertEqual(parse(wire, stream=True), second, name)
            if isinstance(first, SipRequest):
                assert isinstance(second, SipRequest)
                self.assertEqual((second.method, second.uri), (first.method, first.uri), name)
            else:
                assert isinstance(second, SipResponse)
                self.assertEqual((second.status, second.reason), (first.status, first.reason))
            for message in (first, second):
                message.headers.remove("Content-Length")
            self.assertEqual(second.headers, first.headers, name)

    def test_wsinv(self) -> None:
        """
        If header names, colons, values and parameters are wrapped in LWS and
        folded (wsinv), every field is still read correctly.
        """
        message = req("wsinv")
        self.assertEqual(message.method, "INVITE")
        self.assertEqual(dict(message.uri.params), {"unknownparam": None})
        self.assertEqual(message.to.tag, "1918181833n")
        self.assertEqual(message.from_.display_name, 'J Rosenberg \\"')
        self.assertEqual(message.from_.tag, "98asjd8")
        self.assertEqual(message.max_forwards, 68)
        self.assertEqual(message.cseq, CSeq(9, "INVITE"))
        self.assertEqual(
            [(v.transport, v.host, v.branch) for v in message.via],
            [
                ("UDP", "192.0.2.2", "390skdjuw"),
                ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
                ("UDP", "192.168.255.111", "z9hG4bK30239"),
            ],
        )
        self.assertEqual(
            message.headers.get("newfangledheader"), "newfangled value continued newfangled value"
        )
        self.assertEqual(message.headers.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
        self.assertEqual(message.headers.get("Subject"), "")
        contact = message.contact
        assert contact != "*"
        self.assertEqual(contact[0].display_name, 'Quoted string ""')
        self.assertEqual(
            contact[0].params, {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
        )
        self.assertTrue(message.route[0].uri.lr)
        self.assertEqual(len(message.body), 150)

    def test_intmeth(self) -> None:
        """
        If method, URI, display names, parameters and Call-ID use every allowed
        odd character (intmeth), they are read as written; % is not an escape
        in tokens or the Call-ID.
        """
        message = req("intmeth")
        method = "!interesting-Method0123456789_*+`.%indeed'~"
        self.assertEqual(message.method, method)
        self.assertEqual(message.cseq, CSeq(139122385, method))
        assert isinstance(message.uri, SipURI)
        self.assertEqual(message.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(message.uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        self.assertEqual(message.to.display_name, "BEL:\x07 NUL:\x00 DEL:\x7f")
        self.assertEqual(message.from_.display_name, "token1~` token2'+_ token3*%!.-")
        self.assertEqual(message.from_.params["fromparam''~+*_!.-%"], '"работающий"')
        self.assertEqual(message.from_.tag, "_token~1'+`*%!-.")
        self.assertEqual(message.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
        self.assertEqual(message.headers.get("extensionHeader-!.%*+_`'~"), "\ufeff大停電")

    def test_escapes(self) -> None:
        """
        If URIs hold %-escapes (esc01, escnull), the decoded user parts are
        used, once, and escaped NULs keep distinct contacts apart.
        """
        message = req("esc01")
        self.assertEqual(message.uri.user, "sips:user@example.com")
        self.assertEqual(message.uri.host, "example.net")
        self.assertEqual(message.to.uri, parse_uri("sip:user@example.com"))
        self.assertEqual(getattr(message.from_.uri, "user"), "I have spaces")
        contact = message.contact[0]
        self.assertEqual(dict(getattr(contact.uri, "params")), {"lr": None, "name": "value%41"})
        self.assertEqual(message.headers.get("Content-Type"), "application/sdp")
        users = [getattr(c.uri, "user") for c in req("escnull").contact]
        self.assertEqual(users, ["\x00", "\x00\x00"])

    def test_percentIsNotAlwaysAnEscape(self) -> None:
        """
        If % appears in a method or header name (esc02), it is a plain token
        character: RE%47IST%45R is not REGISTER and C%6Fntact is not Contact.
        """
        message = req("esc02")
        self.assertEqual(message.method, "RE%47IST%45R")
        self.assertEqual(len(message.contact), 2)
        self.assertEqual(message.headers.get("C%6Fntact"), "<sip:alias2@host2.example.com>")

    def test_assortedWellFormed(self) -> None:
        """
        If the other well-formed messages are parsed, their distinctive fields
        come out right.
        """
        self.assertEqual(req("lwsdisp").from_.display_name, "caller")
        longreq = req("longreq")
        self.assertEqual((len(longreq.via), getattr(longreq.to.uri, "port")), (34, 6000))
        self.assertEqual(len(longreq.from_.tag or ""), 155)
        dblreq = req("dblreq")
        self.assertEqual((dblreq.method, dblreq.body), ("REGISTER", b""))
        semiuri = req("semiuri")
        self.assertEqual(semiuri.uri.user, "user;par=u@example.net")
        self.assertEqual(len(semiuri.headers.get_list("Accept")), 6)
        transports = [v.transport for v in req("transports").via]
        self.assertEqual(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])
        self.assertEqual(req("zeromf").max_forwards, 0)
        self.assertEqual(req("badbranch").via[0].branch, "z9hG4bK")
        authorization = req("regaut01").headers.get("Authorization")
        self.assertEqual(authorization, "NoOneKnowsThisScheme opaque-data=here")
        require = req("bext01").headers.get_list("Require")
        self.assertEqual(require, ["nothingSupportsThis", "nothingSupportsThisEither"])

    def test_binaryBody(self) -> None:
        """
        If a body holds NUL and CRLF bytes (mpart01), it is framed by
        Content-Length, byte for byte.
        """
        message = req("mpart01")
        data = corpus("mpart01")
        self.assertEqual(message.body, data[-553:])
        self.assertIn(b"\x00", message.body)
        self.assertTrue(message.via[0].has_rport)

    def test_responses(self) -> None:
        """
        If a response has a UTF-8 reason phrase (unreason) or an empty one
        (noreason), the phrase is kept exactly.
        """
        unreason = parsed("unreason")
        assert isinstance(unreason, SipResponse)
        self.assertEqual(unreason.status, 200)
        self.assertEqual(unreason.reason, "= 2**3 * 5**2 но сто девяносто девять - простое")
        noreason = parsed("noreason")
        assert isinstance(noreason, SipResponse)
        self.assertEqual((noreason.status, noreason.reason), (100, ""))
        self.assertEqual(bytes(noreason).split(b"\r\n")[0], b"SIP/2.0 100 ")
        self.assertEqual(parsed("bcast").via[1].host, "255.255.255.255")

    def test_contactParameters(self) -> None:
        """
        If a Contact parameter follows a bare URI it is a header parameter
        (cparam01); inside <> it is a URI parameter (cparam02); an escaped
        header stays in the URI (regescrt).
        """
        bare = req("cparam01").contact[0]
        self.assertEqual(bare.params, {"unknownparam": None})
        self.assertEqual(dict(getattr(bare.uri, "params")), {})
        bracketed = req("cparam02").contact[0]
        self.assertEqual(bracketed.params, {})
        self.assertEqual(dict(getattr(bracketed.uri, "params")), {"unknownparam": None})
        escaped = req("regescrt").contact[0]
        self.assertEqual(dict(getattr(escaped.uri, "headers")), {"Route": "<sip:sip.example.com>"})

    def test_otherSchemesInHeaders(self) -> None:
        """
        If To, From or Contact use non-SIP schemes (unksm2), they parse as
        opaque URIs for the registrar to refuse.
        """
        message = req("unksm2")
        self.assertEqual(message.to.uri, AbsoluteURI("isbn", "2983792873"))
        self.assertEqual(message.from_.uri, AbsoluteURI("http", "//www.example.com"))
        self.assertEqual(message.contact[0].uri, AbsoluteURI("name", "John_Smith"))

    def test_rfc2543Compatibility(self) -> None:
        """
        If a message has no Max-Forwards and no Content-Length (inv2543), it is
        accepted on UDP with the rest of the datagram as body, but not on a
        stream.
        """
        message = req("inv2543")
        self.assertIsNone(message.max_forwards)
        self.assertIsNone(message.content_length)
        self.assertTrue(message.body.startswith(b"v=0\r\n") and message.body.endswith(b"0\r\n"))
        with self.assertRaises(SipParseError) as caught:
            parse(corpus("inv2543"), stream=True)
        self.assertEqual(caught.exception.reason, "Missing Content-Length header")

    def test_rejectionReasons(self) -> None:
        """
        If a malformed message is rejected, the reason names the problem.
        """
        reasons = {
            "insuf": "Missing From header",
            "clerr": "Content-Length mismatch",
            "ncl": "Bad Content-Length header",
            "mcl01": "Multiple Content-Length headers",
            "scalar02": "Bad CSeq header",
            "ltgtruri": "Bad Request-URI",
            "mismatch01": "CSeq method does not match request method",
            "badvers": "Version Not Supported",
            "unkscm": "Unsupported URI Scheme",
            "test": "Malformed header line",
        }
        for name, reason in reasons.items():
            with self.assertRaises(SipParseError) as caught:
                parse(corpus(name))
            self.assertEqual(caught.exception.reason, reason, name)

    def test_errorResponses(self) -> None:
        """
        If a malformed request still has the headers a response needs, an error
        response is built with the error's status; if not (insuf), or if the
        bad message is a response, there is none.
        """
        answers = {}
        for name, status in EXPECTED.items():
            if status is not None:
                try:
                    parse(corpus(name))
                except SipParseError as error:
                    answers[name] = error_response(error, to_tag="srv1")
        badvers = answers["badvers"]
        assert badvers is not None
        self.assertEqual((badvers.status, badvers.reason), (505, "Version Not Supported"))
        self.assertEqual(badvers.call_id, "badvers.31417@c.example.com")
        self.assertEqual(badvers.to.tag, "srv1")
        unkscm = answers["unkscm"]
        assert unkscm is not None
        self.assertEqual(unkscm.status, 416)
        self.assertIsNone(answers["insuf"])
        self.assertIsNone(answers["bigcode"])
        self.assertIsNone(answers["scalarlg"])
        self.assertIsNone(answers["test"])
        self.assertEqual(answers["mismatch01"].status, 400)  # type: ignore[union-attr]


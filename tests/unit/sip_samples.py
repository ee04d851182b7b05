"""Shared SIP test data: the RFC 4475 corpus, this parser's verdict on each message, builders."""

from __future__ import annotations

import json
import pathlib

from unirtc.sip.message import SipRequest, SipResponse, parse

CORPUS = pathlib.Path(__file__).parent.parent / "corpora" / "sip_rfc4475"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())["cases"]
ROWS = {pathlib.Path(row["file"]).name: row for row in MANIFEST}

# What this parser does with each message: None = parses, else the SipParseError status.
# CorpusTests checks each choice against the outcomes the manifest allows.
EXPECTED: dict[str, int | None] = {
    **dict.fromkeys(
        "wsinv intmeth esc01 escnull esc02 lwsdisp longreq dblreq semiuri transports mpart01 "
        "unreason noreason baddate badbranch unksm2 bext01 invut regaut01 bcast zeromf cparam01 "
        "cparam02 regescrt sdp01 inv2543".split(),
        None,
    ),
    **dict.fromkeys(
        "badinv01 clerr ncl scalar02 scalarlg quotbal ltgtruri lwsruri lwsstart trws escruri "
        "regbadct badaspec baddn mismatch01 mismatch02 bigcode insuf multi01 mcl01 test "
        "baddn.crlf-terminated-variant".split(),
        400,
    ),
    "badvers": 505,
    "unkscm": 416,
    "novelsc": 416,
}
WELL_FORMED = sorted(name for name, status in EXPECTED.items() if status is None)


def corpus(name: str) -> bytes:
    return (CORPUS / "messages" / f"{name}.dat").read_bytes()


def parsed(name: str) -> SipRequest | SipResponse:
    return parse(corpus(name))


def req(name: str) -> SipRequest:
    message = parsed(name)
    assert isinstance(message, SipRequest)
    return message


BASE_HEADERS = [
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
]


def build(
    start: str = "INVITE sip:bob@biloxi.example.com SIP/2.0",
    headers: list[str] | None = None,
    body: bytes = b"",
    eol: bytes = b"\r\n",
) -> bytes:
    lines = [start, *(BASE_HEADERS if headers is None else headers)]
    return eol.join(line.encode() for line in lines) + eol + eol + body


def stream_wire() -> dict[str, bytes]:
    """Each well-formed torture message as serialised for a stream (Content-Length set)."""
    return {name: bytes(parsed(name)) for name in WELL_FORMED}


def without(*names: str) -> list[str]:
    return [h for h in BASE_HEADERS if h.split(":")[0] not in names]


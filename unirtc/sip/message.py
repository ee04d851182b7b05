"""SIP messages (RFC 3261 §7): parse, validate, serialise, frame streams, build responses.

Sans-I/O: ``parse(datagram)`` for UDP, ``StreamFramer().feed(chunk)`` then
``parse(frame, stream=True)`` for TCP/TLS. Only the headers every element needs
(Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact) are
checked on parse; the rest stay raw until asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from unirtc.sip.headers import (
    CSeq,
    Headers,
    Via,
    parse_call_id,
    parse_contact,
    parse_content_length,
    parse_cseq,
    parse_expires,
    parse_from,
    parse_max_forwards,
    parse_record_route,
    parse_route,
    parse_to,
    parse_via_list,
)
from unirtc.sip.uri import TOKEN, NameAddr, SipParseError, SipURI, parse_name_addr, parse_uri

__all__ = [
    "CSeq",
    "Headers",
    "KeepAlive",
    "NameAddr",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipURI",
    "StreamFramer",
    "Via",
    "error_response",
    "is_keepalive",
    "make_response",
    "parse",
    "reason_phrase",
]

MAX_MESSAGE = 65535
MAX_URI = 8192

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip
_CLASS_REASONS = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}  # fmt: skip

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(r"\r?\n")
_FOLD = re.compile(rb"\r?\n[ \t]+")
_CONTENT_LENGTH = re.compile(rb"(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION = re.compile(r"SIP/([0-9]{1,9})\.([0-9]{1,9})", re.IGNORECASE)
_STATUS = re.compile(r"[0-9]{3}")


def reason_phrase(status: int) -> str:
    """The usual reason phrase for ``status`` (or its class's name when unlisted)."""
    return REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")


class _Accessors:
    """Typed, lazily parsed views of the headers shared by requests and responses."""

    headers: Headers

    @property
    def via(self) -> list[Via]:
        return self.headers.parsed("Via", parse_via_list)

    @property
    def from_(self) -> NameAddr:
        return self.headers.parsed("From", parse_from)

    @property
    def to(self) -> NameAddr:
        return self.headers.parsed("To", parse_to)

    @property
    def call_id(self) -> str:
        return self.headers.parsed("Call-ID", parse_call_id)

    @property
    def cseq(self) -> CSeq:
        return self.headers.parsed("CSeq", parse_cseq)

    @property
    def contact(self) -> list[NameAddr] | Literal["*"]:
        return self.headers.parsed("Contact", parse_contact)

    @property
    def route(self) -> list[NameAddr]:
        return self.headers.parsed("Route", parse_route)

    @property
    def record_route(self) -> list[NameAddr]:
        return self.headers.parsed("Record-Route", parse_record_route)

    @property
    def max_forwards(self) -> int | None:
        return self.headers.parsed("Max-Forwards", parse_max_forwards)

    @property
    def expires(self) -> int | None:
        return self.headers.parsed("Expires", parse_expires)

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received (``bytes()`` always writes the true length)."""
        return self.headers.parsed("Content-Length", parse_content_length)


def _serialise(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    length_written = False
    for name, value in headers:
        if name == "Content-Length":
            if length_written:
                continue
            value, length_written = str(len(body)), True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@dataclass
class SipRequest(_Accessors):
    method: str
    uri: SipURI
    version: str = "SIP/2.0"
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass
class SipResponse(_Accessors):
    status: int
    reason: str | None = None
    version: str = "SIP/2.0"
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if self.reason is None:
            self.reason = reason_phrase(self.status)

    def __bytes__(self) -> bytes:
        return _serialise(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


def _check_value(value: str) -> None:
    """Controls may appear in a header only as quoted-pairs inside a quoted string."""
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif _CONTROL.match(char):
            raise SipParseError("Control character in header")


def _fields(lines: list[str], lenient: bool = False) -> list[tuple[str, str]]:
    """Unfold continuation lines and split ``name: value`` fields.

    ``lenient`` skips malformed lines instead of failing: only for finding the Via, From, To,
    Call-ID and CSeq a 400 needs when some other header line is broken.
    """
    grouped: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not grouped:
                raise SipParseError("Continuation line before first header")
            grouped[-1].append(line.strip(" \t"))
        else:
            grouped.append([line])
    fields = []
    for parts in grouped:
        name, colon, value = parts[0].partition(":")
        name = name.rstrip(" \t")
        if not colon or not TOKEN.fullmatch(name):
            if lenient:
                continue
            raise SipParseError("Malformed header line")
        value = " ".join(part for part in [value.strip(" \t"), *parts[1:]] if part)
        if _CONTROL.search(value):
            _check_value(value)
        fields.append((name, value))
    return fields


def _check_version(version: str) -> None:
    match = _VERSION.fullmatch(version)
    if match is None:
        raise SipParseError("Bad SIP version")
    if (int(match[1]), int(match[2])) != (2, 0):
        raise SipParseError("Version Not Supported", 505)


def _request(start_line: str, headers: Headers) -> SipRequest:
    parts = start_line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Bad request line")
    method, uri_text, version = parts
    _check_version(version)
    if not TOKEN.fullmatch(method):
        raise SipParseError("Bad method")
    if len(uri_text) > MAX_URI:
        raise SipParseError("Request-URI Too Long", 414)
    try:
        uri = parse_uri(uri_text)
    except SipParseError:
        raise SipParseError("Bad Request-URI") from None
    if not isinstance(uri, SipURI):
        raise SipParseError("Unsupported URI Scheme", 416)
    if uri.headers:
        raise SipParseError("Bad Request-URI: headers are not allowed")
    request = SipRequest(method, uri, "SIP/2.0", headers)
    if request.cseq.method != method:
        raise SipParseError("CSeq method does not match request method")
    return request


def _response(start_line: str, headers: Headers) -> SipResponse:
    version, _, rest = start_line.partition(" ")
    _check_version(version)
    code, _, reason = rest.partition(" ")
    if not _STATUS.fullmatch(code) or not 100 <= int(code) <= 699:
        raise SipParseError("Bad status line")
    if _CONTROL.search(reason.replace("\t", " ")):
        raise SipParseError("Control character in reason phrase")
    return SipResponse(int(code), reason, "SIP/2.0", headers)


def _validate(message: SipRequest | SipResponse) -> None:
    if not message.via:
        raise SipParseError("Missing Via header")
    for view in ("from_", "to", "call_id", "cseq", "max_forwards", "content_length", "contact"):
        getattr(message, view)


def parse(
    data: bytes, stream: bool = False, *, max_size: int = MAX_MESSAGE
) -> SipRequest | SipResponse:
    """Parse and check one message: a UDP datagram, or one frame from :class:`StreamFramer`.

    On UDP, Content-Length may be absent (the body is the rest of the datagram)
    and octets after the body are ignored (RFC 3261 §18.3). On streams it is
    mandatory and must match exactly. Raises :class:`SipParseError`.
    """
    if len(data) > max_size:
        raise SipParseError("Message Too Large", 413)
    start = len(data) - len(data.lstrip(b"\r\n"))
    end = _HEAD_END.search(data, start)
    if end is None:
        raise SipParseError("Empty message" if start == len(data) else "Missing end of headers")
    try:
        head = data[start : end.start()].decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("Invalid UTF-8 in message head") from None
    start_line, *lines = _LINE.split(head)
    is_request = start_line[:4].upper() != "SIP/"
    try:
        headers = Headers._trusted(_fields(lines))
    except SipParseError as error:
        if is_request:
            error.headers = _salvaged_headers(lines)
        raise
    try:
        message = _request(start_line, headers) if is_request else _response(start_line, headers)
        _validate(message)
        message.body = _body(data[end.end() :], message.content_length, stream)
    except SipParseError as error:
        if is_request:
            error.headers = headers
        raise
    return message


def _salvaged_headers(lines: list[str]) -> Headers | None:
    """The well-formed header lines of a request with a broken one, so it can still get its 400."""
    try:
        return Headers._trusted(_fields(lines, lenient=True))
    except SipParseError:
        return None


def _body(rest: bytes, length: int | None, stream: bool) -> bytes:
    if length is None:
        if stream:
            raise SipParseError("Missing Content-Length header")
        return rest
    if len(rest) < length or (stream and len(rest) != length):
        raise SipParseError("Content-Length mismatch")
    return rest[:length]


def is_keepalive(datagram: bytes) -> bool:
    """True for a datagram holding only CRLFs (a NAT keep-alive), which gets no answer."""
    return datagram.strip(b"\r\n") == b""


@dataclass(frozen=True)
class KeepAlive:
    """A double-CRLF ping on a stream (RFC 5626 §4.4.1): write :attr:`PONG` back."""

    PONG = b"\r\n"


class StreamFramer:
    """Split a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3).

    ``feed`` returns complete messages (bytes, to hand to ``parse(frame,
    stream=True)``) and :class:`KeepAlive` events. A framing error (missing or
    bad Content-Length, oversized message) raises :class:`SipParseError` with
    400 or 413; the stream cannot be resynchronised, so the framer stays failed
    and the connection should be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._scanned = 0
        self._frame_size: int | None = None
        self._failed: SipParseError | None = None

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        if self._failed is not None:
            raise SipParseError(self._failed.reason, self._failed.status)
        self._buffer += data
        events: list[bytes | KeepAlive] = []
        try:
            while (event := self._next()) is not None:
                events.append(event)
        except SipParseError as error:
            self._failed = error
            self._buffer.clear()
            raise
        return events

    def _next(self) -> bytes | KeepAlive | None:
        buffer = self._buffer
        if self._scanned == 0 and self._frame_size is None:
            while buffer[:1] in (b"\r", b"\n"):
                if buffer[:4] == b"\r\n\r\n":
                    del buffer[:4]
                    return KeepAlive()
                if len(buffer) < 4 and b"\r\n\r\n".startswith(buffer):
                    return None
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                elif buffer[:1] == b"\n":
                    del buffer[:1]
                else:
                    break
        if self._frame_size is None:
            end = _HEAD_END.search(buffer, max(0, self._scanned - 3))
            if end is None:
                if len(buffer) > self.max_size:
                    raise SipParseError("Message Too Large", 413)
                self._scanned = len(buffer)
                return None
            size = end.end() + _framing_length(bytes(buffer[: end.start()]))
            if size > self.max_size:
                raise SipParseError("Message Too Large", 413)
            self._frame_size = size
        if len(buffer) < self._frame_size:
            return None
        frame = bytes(buffer[: self._frame_size])
        del buffer[: self._frame_size]
        self._frame_size = None
        self._scanned = 0
        return frame


def _framing_length(head: bytes) -> int:
    values = set()
    for line in _FOLD.sub(b" ", head).splitlines():
        match = _CONTENT_LENGTH.fullmatch(line)
        if match:
            values.add(match[1])
    if not values:
        raise SipParseError("Missing Content-Length header")
    if len(values) > 1:
        raise SipParseError("Multiple Content-Length headers")
    value = values.pop()
    if not value.isdigit() or len(value) > 10:
        raise SipParseError("Bad Content-Length header")
    return int(value)


def _response_from(
    headers: Headers, status: int, reason: str | None, to_tag: str | None
) -> SipResponse:
    """Copy Via, From, To (adding a tag), Call-ID and CSeq as RFC 3261 §8.2.6.2 says."""
    copied = Headers()
    for value in headers.get_all("Via"):
        copied.add("Via", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = headers.get(name)
        if value is not None:
            if name == "To" and to_tag is not None and _lacks_tag(value):
                value = f"{value};tag={to_tag}"
            copied.add(name, value)
    if status == 100 and "Timestamp" in headers:
        copied.add("Timestamp", headers.get("Timestamp") or "")
    return SipResponse(status, reason, headers=copied)


def _lacks_tag(to_value: str) -> bool:
    try:
        return parse_name_addr(to_value).tag is None
    except SipParseError:
        return False


def make_response(
    request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request``; ``to_tag`` is added to To unless it already has a tag."""
    return _response_from(request.headers, status, reason, to_tag)


def error_response(error: SipParseError, to_tag: str | None = None) -> SipResponse | None:
    """The response to a request that failed to parse, or None when it cannot be answered.

    Malformed responses are never answered, and neither are requests whose
    Via, From, To, Call-ID or CSeq could not be read.
    """
    headers = error.headers
    if headers is None or not all(
        name in headers for name in ("Via", "From", "To", "Call-ID", "CSeq")
    ):
        return None
    return _response_from(headers, error.status, error.reason, to_tag)

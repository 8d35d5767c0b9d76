"""Undoing a Content-Transfer-Encoding, whole or piece by piece (core).

``TransferDecoder`` takes a part's octets in chunks of any size (as a partial ``FETCH``
returns them) and gives the decoded bytes as it goes, holding back at most a few bytes (a
base64 group, a quoted-printable escape cut by the chunk): what the API streams of a
40 MB attachment never sits in memory whole. ``decode_transfer`` is the same decoder fed
once. Decoding is forgiving, as mail clients are:

- base64: characters outside the alphabet (line breaks, junk) are skipped; the first ``=``
  ends the data (RFC 2045 section 6.8: padding comes only at the end); a final group cut
  short (a partial fetch ends anywhere, encoders that leave out padding) still gives the
  bytes its characters hold whole (2 characters carry one byte, 3 carry two).
- quoted-printable: ``binascii.a2b_qp`` (what ``quopri`` uses), on whole lines; a line
  longer than ``MAX_QP_HELD_BYTES`` is decoded up to a point that no escape spans.
- anything else (7bit, 8bit, binary, unknown): the octets as they are.
"""

from __future__ import annotations

import binascii
import re

#: Bytes of a quoted-printable line held back while waiting for its end: RFC 2045 lines are
#: at most 76 characters, so only broken or hostile input waits this long; past it the line
#: is decoded in pieces and memory stays bounded.
MAX_QP_HELD_BYTES = 64 * 1024

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
BASE64 = "base64"
QUOTED_PRINTABLE = "quoted-printable"


class TransferDecoder:
    """Decodes one part's octets, fed in order; ``finish`` gives what was held back."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding.strip().lower()
        self._held = b""
        self._ended = False

    def feed(self, octets: bytes) -> bytes:
        match self.encoding:
            case "base64":
                return self._feed_base64(octets)
            case "quoted-printable":
                return self._feed_quoted_printable(octets)
            case _:
                return octets

    def finish(self) -> bytes:
        held, self._held = self._held, b""
        match self.encoding:
            case "base64":
                return _decode_base64_tail(held)
            case "quoted-printable":
                return binascii.a2b_qp(held)
            case _:
                return b""

    def _feed_base64(self, octets: bytes) -> bytes:
        if self._ended:
            return b""
        data = self._held + _NOT_BASE64.sub(b"", octets)
        end = data.find(b"=")
        if end >= 0:
            self._ended = True
            self._held = b""
            return _decode_base64_tail(data[:end])
        whole = len(data) - len(data) % 4
        self._held = data[whole:]
        return binascii.a2b_base64(data[:whole]) if whole else b""

    def _feed_quoted_printable(self, octets: bytes) -> bytes:
        data = self._held + octets
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > MAX_QP_HELD_BYTES:
            cut = _qp_safe_cut(data) or len(data) - 2  # a run of "=": bounded, if not exact
        self._held = data[cut:]
        return binascii.a2b_qp(data[:cut]) if cut else b""


def decode_transfer(octets: bytes, encoding: str) -> bytes:
    """``octets`` with their Content-Transfer-Encoding undone (see the module docstring)."""
    decoder = TransferDecoder(encoding)
    return decoder.feed(octets) + decoder.finish()


def _decode_base64_tail(data: bytes) -> bytes:
    """Whole groups, then the bytes a short last group holds (one character holds none)."""
    whole = len(data) - len(data) % 4
    rest = data[whole:]
    out = binascii.a2b_base64(data[:whole]) if whole else b""
    if len(rest) >= 2:
        out += binascii.a2b_base64(rest + b"=" * (4 - len(rest)))
    return out


def _qp_safe_cut(data: bytes) -> int:
    """A point in a long line that no ``=XX`` escape or soft line break spans."""
    cut = len(data)
    while cut > 0 and b"=" in data[max(cut - 2, 0) : cut]:
        cut -= 1
    return cut

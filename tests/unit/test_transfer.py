"""The transfer decoder: fed in any chunks, it gives what decoding the whole gives."""

from __future__ import annotations

import base64
import binascii
import quopri

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.ingest.transfer import MAX_QP_HELD_BYTES, TransferDecoder, decode_transfer


def decode_in_chunks(octets: bytes, encoding: str, cuts: list[int]) -> bytes:
    decoder = TransferDecoder(encoding)
    out, start = [], 0
    for cut in [*sorted({min(c, len(octets)) for c in cuts}), len(octets)]:
        out.append(decoder.feed(octets[start:cut]))
        start = cut
    out.append(decoder.finish())
    return b"".join(out)


cuts = st.lists(st.integers(min_value=0, max_value=4000), max_size=12)


@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=100), cuts)
def test_base64_in_chunks_is_the_bytes_sent(data: bytes, line: int, at: list[int]) -> None:
    encoded = base64.b64encode(data)
    wrapped = b"\r\n".join(encoded[i : i + line] for i in range(0, len(encoded), line))
    assert decode_in_chunks(wrapped, "base64", at) == data


@given(st.binary(max_size=3000), cuts)
def test_quoted_printable_in_chunks_is_the_bytes_sent(data: bytes, at: list[int]) -> None:
    encoded = quopri.encodestring(data)
    assert decode_in_chunks(encoded, "quoted-printable", at) == data


qp_like = st.binary(max_size=400).map(lambda b: bytes(b"=\r\n \tA3f"[x % 8] for x in b))


@given(qp_like, cuts)
def test_any_quoted_printable_in_chunks_decodes_as_whole(data: bytes, at: list[int]) -> None:
    assert decode_in_chunks(data, "quoted-printable", at) == binascii.a2b_qp(data)


@given(st.binary(max_size=400).map(lambda b: bytes(b"A=3f "[x % 5] for x in b)), cuts)
def test_a_line_longer_than_held_decodes_as_whole(tail: bytes, at: list[int]) -> None:
    line = b"x" * (MAX_QP_HELD_BYTES + 5) + tail
    assert decode_in_chunks(line, "quoted-printable", at) == binascii.a2b_qp(line)


def test_a_long_line_is_not_held_whole() -> None:
    decoder = TransferDecoder("quoted-printable")
    out = decoder.feed(b"a=3D" * MAX_QP_HELD_BYTES)
    assert len(out) >= MAX_QP_HELD_BYTES - 2
    assert out + decoder.finish() == b"a=" * MAX_QP_HELD_BYTES


@given(st.binary(max_size=500), cuts)
def test_identity_in_chunks_is_unchanged(data: bytes, at: list[int]) -> None:
    assert decode_in_chunks(data, "8bit", at) == data


@pytest.mark.parametrize(
    ("octets", "decoded"),
    [
        (b"QQ==QUJD", b"A"),  # padding ends the data
        (b"QUJD\r\n!!RA", b"ABCD"),  # junk skipped, a short last group still read
        (b"QUJDR", b"ABC"),  # one character carries no byte
        (b"", b""),
    ],
    ids=["padding-ends", "junk-and-short-group", "lone-character", "empty"],
)
def test_forgiving_base64(octets: bytes, decoded: bytes) -> None:
    assert decode_transfer(octets, " Base64 ") == decoded
    assert decode_in_chunks(octets, "base64", [1, 2, 3, 5, 7]) == decoded

"""Property tests of the mapping: any bytes become an event or a classified dead letter.

Arbitrary byte strings, and real messages (the corpus) mutated at random: flipped and
inserted bytes, cut and doubled ranges, and MIME tokens dropped in anywhere. For each,
``parse_message`` + ``build_email_data`` give plain JSON or ``MessageUnparseable`` and
nothing else; and the whole ``build_entry`` gives an event within the entry bound that passes
the consumer's contract, or a dead letter whose reason is one a message can earn (never
``event_build_failed`` or ``contract_violation``, our bugs).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.contract.check import check_entry
from email_service.errors import MessageUnparseable
from email_service.imap.fetched import FetchedHeaders, FetchedMessage, structure_from_response
from email_service.ingest.email_data import MessageMeta, build_email_data, sha256_hex
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.ingest.limits import entry_bytes
from email_service.ingest.mime_structure import parse_without_body, plan_body_sections
from email_service.ingest.parsing import parse_message
from email_service.model import FolderKey
from email_service.settings import IngressLimits
from tests.corpus import CORPUS_DIR
from tests.helpers import RANDOM_UUID, TENANT_A

META = MessageMeta(
    TENANT_A, "provider", "imap", "INBOX", 5, 9, None, 0, (), datetime(2026, 1, 1, tzinfo=UTC)
)
#: A small bound, so the shrinking steps run on ordinary inputs too.
TARGET = IngestTarget(
    FolderKey(TENANT_A, "provider", "INBOX"), "imap", 9, IngressLimits(max_event_bytes=8192)
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)

SEEDS = tuple(path.read_bytes() for path in sorted(CORPUS_DIR.glob("*.eml")))
#: Bytes that change how a message parses.
TOKENS = (
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"--",
    b"--B--\r\n",
    b"=?utf-8?b?",
    b"=?x-unknown?q?=FF?=",
    b"?=",
    b"Content-Type: multipart/mixed; boundary=B\r\n",
    b"Content-Type: message/rfc822\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b"; charset=",
    b"filename*0*=utf-8''%FF%FE;",
    b"=\r\n",
    b"=ZZ",
    b"\x00",
    b"\xff\xfe",
    b"\\ud800",
    b"<",
    b">",
    b"@",
    b'"',
    b"\t",
    b":",
)

EXAMPLES = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "insert", "token", "cut", "double", "truncate"])):
            case "flip" if data:
                data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            case "token":
                data[at:at] = draw(st.sampled_from(TOKENS))
            case "cut":
                del data[at : at + draw(st.integers(1, 64))]
            case "double":
                data[at:at] = data[at : at + draw(st.integers(1, 200))]
            case "truncate":
                del data[at:]
    return bytes(data)


#: Dead-letter reasons a message can earn; ``contract_violation`` and ``event_build_failed``
#: are bugs of ours.
MESSAGE_REASONS = ("unparseable", "event_too_large", "no_usable_sender")


def assert_maps_or_is_unparseable(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
        data = build_email_data(parsed, META, sha256_hex(raw))
    except MessageUnparseable:  # NoUsableSender included
        return
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    assert json.loads(text.encode("utf-8")) == data  # plain JSON types, valid UTF-8


def assert_entry_is_classified(raw: bytes) -> None:
    fetched = FetchedMessage(uid=5, raw=raw, internal_date=NOW, flags=(), size=len(raw))
    entry = build_entry(fetched, TARGET, now=NOW, random_uuid=uuid.UUID(RANDOM_UUID))
    if entry.dead_letter:
        assert entry.fields["reason"] in MESSAGE_REASONS, entry.fields
        return
    assert entry_bytes(entry.fields) <= TARGET.limits.max_event_bytes
    assert check_entry(entry.fields) is None


@EXAMPLES
@given(st.binary(max_size=4096))
def test_any_bytes_map_or_are_unparseable(raw: bytes) -> None:
    assert_maps_or_is_unparseable(raw)


@EXAMPLES
@given(st.binary(max_size=2048).map(lambda body: b"Subject: x\r\n" + body))
def test_any_bytes_after_a_header_map_or_are_unparseable(raw: bytes) -> None:
    assert_maps_or_is_unparseable(raw)
    assert_entry_is_classified(raw)


@EXAMPLES
@given(mutated_messages())
def test_mutated_real_messages_map_or_are_unparseable(raw: bytes) -> None:
    assert_maps_or_is_unparseable(raw)
    assert_entry_is_classified(raw)


atoms = st.one_of(
    st.none(), st.integers(-5, 10**9), st.binary(max_size=12), st.sampled_from([b"text", b"plain"])
)
structures = st.recursive(
    st.tuples(*([atoms] * 7)).map(tuple) | st.lists(atoms, max_size=12).map(tuple),
    lambda inner: (
        st.tuples(st.lists(inner, min_size=1, max_size=4), atoms, atoms, atoms)
        | st.lists(inner | atoms, max_size=12).map(tuple)
    ),
    max_leaves=20,
)


@EXAMPLES
@given(structures, st.dictionaries(st.text("0123456789.", max_size=5), st.binary(max_size=64)))
def test_any_bodystructure_gives_metadata_never_an_error(
    structure: Any, sections: dict[str, bytes]
) -> None:
    root = structure_from_response(structure)
    fetched = FetchedHeaders(
        uid=1,
        header=b"From: a@example.com\r\nSubject: s\r\n\r\n",
        structure=root,
        internal_date=None,
        flags=(),
        size=10**8,
        sections=sections,
    )
    parsed = parse_without_body(fetched, plan_body_sections(root, 1000))
    json.dumps([attachment.name for attachment in parsed.attachments]).encode("utf-8")
    entry = build_entry(fetched, TARGET, now=NOW, random_uuid=uuid.UUID(RANDOM_UUID))
    assert not entry.dead_letter, entry.fields
    assert check_entry(entry.fields) is None

"""The corpus (``tests/corpus``) straight through ``ingest.entry.build_entry``: each message is an
event that passes its checks, or a dead letter with the expected reason, within the bound.
The large generated messages are left to ``tests/e2e/test_corpus.py``."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from email_service.contract.check import check_entry
from email_service.imap.fetched import FetchedMessage
from email_service.ingest.entry import IngestTarget, build_entry
from email_service.ingest.limits import entry_bytes
from email_service.model import FolderKey
from email_service.settings import IngressLimits
from tests.corpus import CORPUS, CorpusMessage
from tests.helpers import RANDOM_UUID, TENANT_A

TARGET = IngestTarget(FolderKey(TENANT_A, "prov-1", "INBOX"), "imap", 9, IngressLimits())
INTERNAL = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("message", [m for m in CORPUS if not m.large], ids=lambda m: m.name)
def test_corpus_message(message: CorpusMessage) -> None:
    raw = message.build()
    fetched = FetchedMessage(uid=3, raw=raw, internal_date=INTERNAL, flags=(), size=len(raw))

    entry = build_entry(fetched, TARGET, now=INTERNAL, random_uuid=uuid.UUID(RANDOM_UUID))

    assert entry_bytes(entry.fields) <= TARGET.limits.max_event_bytes
    if message.dead_letter is not None:
        assert entry.dead_letter, "expected a dead letter"
        assert entry.fields["reason"] == message.dead_letter
        if len(raw) <= TARGET.limits.dead_letter_raw_bytes:
            assert base64.b64decode(entry.fields["rawBase64"]) == raw
        else:
            assert entry.fields["rawRefetch"] == "uid"
        return
    assert not entry.dead_letter, entry.fields.get("detail")
    assert check_entry(entry.fields) is None
    assert message.expect is not None
    message.expect(json.loads(entry.fields["payload_json"])["emailData"])

"""Size caps: fetch batches, what an event leaves out, and the bound on a stream entry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from email_service.errors import EventTooLarge
from email_service.ingest.limits import (
    FETCH_BATCH_MAX_BYTES,
    HEADERS,
    MAX_SKIP_REASONS,
    MISSING,
    WHOLE,
    FetchBatch,
    IngressLimits,
    cap_attachments,
    cap_headers,
    cap_list,
    cut_utf8,
    entry_bytes,
    fit_event,
    plan_fetch_batches,
    report_skips,
)
from email_service.settings import Settings

MB = 1024 * 1024
LIMITS = IngressLimits(max_raw_mime_bytes=25 * MB, fetch_batch_size=3)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([], []),
        ([(1, 10), (2, 10), (3, 10), (4, 10)], [((1, 2, 3), WHOLE), ((4,), WHOLE)]),
        (
            [(1, 10), (2, 30 * MB), (3, 40 * MB), (4, 10)],
            [((1,), WHOLE), ((2, 3), HEADERS), ((4,), WHOLE)],
        ),
        (
            [(1, 5 * MB), (2, 5 * MB), (3, 20 * MB), (4, 1)],
            [((1,), WHOLE), ((2,), WHOLE), ((3,), WHOLE), ((4,), WHOLE)],
        ),
        (
            [(1, 10), (2, None), (3, None), (4, 10)],
            [((1,), WHOLE), ((2, 3), MISSING), ((4,), WHOLE)],
        ),
        ([(1, 25 * MB), (2, 25 * MB + 1)], [((1,), WHOLE), ((2,), HEADERS)]),
    ],
    ids=[
        "nothing",
        "by-count",
        "above-the-raw-cap-without-body",
        "by-bytes-large-ones-alone",
        "no-size-is-missing",
        "cap-is-inclusive",
    ],
)
def test_plan_fetch_batches(
    sizes: list[tuple[int, int | None]], expected: list[tuple[tuple[int, ...], str]]
) -> None:
    batches = plan_fetch_batches(sizes, LIMITS)

    assert batches == [FetchBatch(uids, mode) for uids, mode in expected]
    assert [uid for batch in batches for uid in batch.uids] == [uid for uid, _ in sizes]
    for batch in batches:
        if batch.mode == WHOLE and len(batch.uids) > 1:
            assert sum(dict(sizes)[uid] or 0 for uid in batch.uids) <= FETCH_BATCH_MAX_BYTES


def attachment(n: int, size: int) -> dict[str, Any]:
    return {
        "id": str(n),
        "name": f"f{n}.bin",
        "contentType": "a/b",
        "size": size,
        "isInline": False,
    }


@pytest.mark.parametrize(
    ("sizes", "limits", "kept", "reasons"),
    [
        ([10, 20], IngressLimits(), [1, 2], []),
        (
            [10, 20, 30],
            IngressLimits(max_attachment_count=2),
            [1, 2],
            [(3, "attachment_count_exceeded", 2)],
        ),
        (
            [10, 500, 20],
            IngressLimits(max_attachment_bytes=100, max_total_attachment_bytes=1000),
            [1, 3],
            [(2, "attachment_over_max_bytes", 100)],
        ),
        (
            [60, 60, 30],
            IngressLimits(max_attachment_bytes=100, max_total_attachment_bytes=100),
            [1, 3],
            [(2, "attachment_total_bytes_exceeded", 100)],
        ),
    ],
    ids=["within", "count", "per-attachment", "total-then-a-smaller-one-fits"],
)
def test_cap_attachments_follows_the_old_service(
    sizes: list[int],
    limits: IngressLimits,
    kept: list[int],
    reasons: list[tuple[int, str, int]],
) -> None:
    skips: list[dict[str, Any]] = []

    result = cap_attachments(
        [attachment(n, size) for n, size in enumerate(sizes, 1)], limits, skips
    )

    assert [int(item["id"]) for item in result] == kept
    assert skips == [
        {
            "type": "attachment",
            "reason": reason,
            "attachmentId": str(n),
            "attachmentName": f"f{n}.bin",
            "size": sizes[n - 1],
            "cap": cap,
        }
        for n, reason, cap in reasons
    ]


def test_cap_headers_keeps_essential_ones_first_and_message_order() -> None:
    headers = {"Received": "r" * 600, "X-Spam": "s" * 600, "Subject": "hi", "From": "a@b"}
    skips: list[dict[str, Any]] = []

    kept = cap_headers(headers, IngressLimits(max_header_bytes=700), skips)

    assert list(kept) == ["Received", "Subject", "From"]
    assert skips == [
        {
            "type": "header",
            "reason": "header_total_bytes_exceeded",
            "omitted": 1,
            "size": 1230,
            "cap": 700,
        }
    ]
    assert cap_headers(headers, IngressLimits(), skips) is headers


@pytest.mark.parametrize(
    ("field", "expected"),
    [("to", [0, 1, 2]), ("references", [0, 8, 9])],
    ids=["first-ones", "references-keep-root-and-newest"],
)
def test_cap_list(field: str, expected: list[int]) -> None:
    skips: list[dict[str, Any]] = []

    assert cap_list(list(range(10)), 3, skips, kind="k", field=field) == expected
    assert skips == [
        {"type": "k", "reason": "k_count_exceeded", "field": field, "size": 10, "cap": 3}
    ]


def _attachment_skip(n: int) -> dict[str, object]:
    return {"type": "attachment", "reason": "attachment_count_exceeded", "size": n, "cap": 1}


@pytest.mark.parametrize(
    ("skips", "expected"),
    [
        ([], {}),
        (
            [{"type": "raw_mime", "reason": "raw_mime_over_max_bytes", "size": 9, "cap": 5}],
            {"ingressSkipReasons": 1},
        ),
        (
            [{"type": "body", "reason": "body_text_over_max_bytes", "size": 9, "cap": 5}],
            {"ingressTruncations": 1},
        ),
        (
            # the consumer's type with a reason outside its enum is ours
            [{"type": "attachment", "reason": "attachment_empty", "size": 0}],
            {"ingressTruncations": 1},
        ),
        (
            [{"type": "raw_mime", "reason": "attachment_over_max_bytes", "size": 9, "cap": 5}],
            {"ingressTruncations": 1},
        ),
        (
            [_attachment_skip(n) for n in range(3)]
            + [{"type": "header", "reason": "header_total_bytes_exceeded", "size": 9, "cap": 5}],
            {"ingressSkipReasons": 3, "ingressTruncations": 1},
        ),
    ],
    ids=["none", "raw-mime", "body", "empty-attachment", "mismatched-pair", "both"],
)
def test_skips_are_split_between_the_consumers_key_and_ours(
    skips: list[dict[str, object]], expected: dict[str, int]
) -> None:
    report = report_skips(skips)

    assert {key: len(value) for key, value in report.items()} == expected


def test_skip_reasons_are_bounded() -> None:
    consumer = [_attachment_skip(n) for n in range(MAX_SKIP_REASONS + 50)]
    ours = [{"type": "body", "reason": str(n)} for n in range(MAX_SKIP_REASONS + 10)]

    report = report_skips(consumer + ours)

    assert report["ingressSkipReasons"] == consumer[:MAX_SKIP_REASONS]
    assert len(report["ingressTruncations"]) == MAX_SKIP_REASONS
    assert report["ingressTruncations"][-1] == {
        "type": "ingress",
        "reason": "skip_reasons_truncated",
        "field": "ingressTruncations",
        "size": 12,  # 10 over, the one the summary replaces, and the consumer list's summary
        "cap": MAX_SKIP_REASONS,
    }


@pytest.mark.parametrize(
    ("text", "max_bytes", "expected"),
    [("abc", 5, "abc"), ("ab€", 4, "ab"), ("€€", 3, "€"), ("abc", -1, "")],
    ids=["short", "not-inside-a-character", "exact", "negative"],
)
def test_cut_utf8(text: str, max_bytes: int, expected: str) -> None:
    assert cut_utf8(text, max_bytes) == expected


def render(data: Mapping[str, Any]) -> dict[str, str]:
    return {"event_id": "e", "payload_json": json.dumps({"emailData": data}, ensure_ascii=False)}


def big_event(**overrides: Any) -> dict[str, Any]:
    return {
        "subject": "s",
        "body": {"text": "t" * 3000, "html": "<p>" + "h" * 3000},
        "headers": {"X-A": "a" * 2000, "Subject": "s"},
        "to": [{"email": f"r{n}@example.com"} for n in range(100)],
        "cc": [],
        "attachments": [{"id": str(n), "name": "x" * 50} for n in range(40)],
        "references": [f"<m{n}@example.com>" for n in range(100)],
        **overrides,
    }


@pytest.mark.parametrize(
    ("max_bytes", "dropped"),
    [
        (100_000, []),
        (14_000, ["body.html"]),
        (12_000, ["body.html", "body.text"]),
        (9_500, ["body.html", "body.text", "headers"]),
        (7_000, ["body.html", "body.text", "headers", "to"]),
        (1_000, ["body.html", "body.text", "headers", "to", "attachments", "references"]),
    ],
    ids=["fits", "html", "text", "headers", "recipients", "everything"],
)
def test_fit_event_shrinks_in_order_and_never_exceeds_the_bound(
    max_bytes: int, dropped: list[str]
) -> None:
    data = big_event()

    fields, sent = fit_event(data, render, max_bytes)

    assert entry_bytes(fields) <= max_bytes
    reasons = [s for s in sent.get("ingressTruncations", []) if s["type"] == "event"]
    assert [s["field"] for s in reasons] == dropped
    assert all(s["reason"] == "event_over_max_bytes" and s["cap"] == max_bytes for s in reasons)
    assert json.loads(fields["payload_json"])["emailData"] == sent
    assert data == big_event()  # the caller's object is left alone


def test_text_is_cut_only_as_far_as_needed() -> None:
    fields, sent = fit_event(big_event(), render, 12_000)

    assert 11_000 < entry_bytes(fields) <= 12_000
    assert 0 < len(sent["body"]["text"]) < 3000


def test_an_event_that_cannot_fit_is_too_large() -> None:
    with pytest.raises(EventTooLarge, match="EMAIL_SERVICE_MAX_EVENT_BYTES=500"):
        fit_event(big_event(subject="s" * 1000), render, 500)


def test_limits_come_from_settings() -> None:
    settings = Settings.from_env(
        {
            "IMAP_MAX_RAW_MIME_BYTES": "2048",
            "IMAP_MAX_ATTACHMENT_COUNT": "3",
            "EMAIL_SERVICE_MAX_EVENT_BYTES": "65536",
            "EMAIL_SERVICE_DLQ_MAX_RAW_BYTES": "0",
        }
    )

    limits = settings.ingest

    assert (limits.max_raw_mime_bytes, limits.max_attachment_count) == (2048, 3)
    assert (limits.max_event_bytes, limits.dead_letter_raw_bytes) == (65536, 0)
    assert Settings.from_env({}).ingest == IngressLimits()

"""Which content goes inline (inline_content: pure decisions)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from email_service.api.openapi import API_PREFIX
from email_service.ingest.inline_content import (
    ALL,
    API_PATH_PREFIX,
    ATTACHMENTS,
    CONTENT_KEY_BYTES,
    OFF,
    RAW_KEY_BYTES,
    InlinePlan,
    apply_inline,
    base64_length,
    content_candidates,
    content_location,
    plan_inline,
)
from email_service.settings import IngressLimits

LIMITS = IngressLimits(max_event_bytes=10_000, max_raw_mime_bytes=5_000)


def att(part: str, size: int) -> dict[str, Any]:
    return {"id": part, "name": f"f{part}", "contentType": "application/pdf", "size": size}


def cost(size: int) -> int:
    return base64_length(size) + CONTENT_KEY_BYTES


CASES = [
    ("off inlines nothing", [att("2", 10)], 100, 1000, OFF, ("",), False, []),
    ("small attachment fits", [att("2", 300)], None, 1000, ATTACHMENTS, ("2",), False, []),
    (
        "second does not fit the entry",
        [att("2", 3000), att("3", 6000)],
        None,
        1000,
        ATTACHMENTS,
        ("2",),
        False,
        [("attachment", "attachment_total_bytes_exceeded", "3")],
    ),
    (
        "a later small one still fits",
        [att("2", 7000), att("3", 3000), att("4", 10)],
        None,
        1000,
        ATTACHMENTS,
        ("3", "4"),
        False,
        [("attachment", "attachment_total_bytes_exceeded", "2")],
    ),
    ("attachments mode never inlines raw", [], 100, 1000, ATTACHMENTS, ("",), False, []),
    ("all inlines a small raw", [att("2", 100)], 2000, 1000, ALL, ("2",), True, []),
    (
        "raw over the raw cap",
        [],
        5001,
        0,
        ALL,
        ("",),
        False,
        [("raw_mime", "raw_mime_over_max_bytes", None)],
    ),
    (
        "raw over what the entry has left",
        [att("2", 4000)],
        4000,
        1000,
        ALL,
        ("2",),
        False,
        [("raw_mime", "raw_mime_over_max_bytes", None)],
    ),
    ("raw not downloaded whole", [], None, 0, ALL, ("",), False, []),
    (
        "base entry already at the bound",
        [att("2", 1)],
        None,
        10_000,
        ATTACHMENTS,
        ("",),
        False,
        [("attachment", "attachment_total_bytes_exceeded", "2")],
    ),
]


@pytest.mark.parametrize(
    ("attachments", "raw_size", "base", "mode", "parts", "raw", "skips"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan_inline(
    attachments: list[dict[str, Any]],
    raw_size: int | None,
    base: int,
    mode: str,
    parts: tuple[str, ...],
    raw: bool,
    skips: list[tuple[str, str, str | None]],
) -> None:
    plan = plan_inline(attachments, raw_size, base, LIMITS, mode)
    assert plan.parts == tuple(p for p in parts if p)
    assert plan.raw_mime is raw
    assert [(s["type"], s["reason"], s.get("attachmentId")) for s in plan.skips] == skips
    spent = sum(cost(int(a["size"])) for a in attachments if a["id"] in plan.parts)
    if plan.raw_mime:
        assert raw_size is not None
        spent += base64_length(raw_size) + RAW_KEY_BYTES
    assert base + spent <= LIMITS.max_event_bytes or not (plan.parts or plan.raw_mime)
    for skip in plan.skips:
        assert skip["cap"] >= 1 and skip["size"] >= 0


def test_apply_inline_adds_exact_base64_and_skips() -> None:
    data = {"attachments": [att("2", 3), att("3", 9)], "ingressSkipReasons": [{"x": 1}]}
    skip = {"type": "attachment", "reason": "attachment_total_bytes_exceeded", "size": 9, "cap": 1}
    plan = InlinePlan(parts=("2",), raw_mime=True, skips=(skip,))
    out = apply_inline(data, plan, {"2": b"abc"}, b"RAW")
    assert base64.b64decode(out["attachments"][0]["content"]) == b"abc"
    assert "content" not in out["attachments"][1]
    assert base64.b64decode(out["rawMimeBase64"]) == b"RAW"
    assert out["ingressSkipReasons"] == [{"x": 1}, skip]
    assert "content" not in data["attachments"][0]  # the input is left alone


@pytest.mark.parametrize(
    ("sizes", "mode", "chosen"),
    [
        ([100, 200], OFF, []),
        ([100, 200], ATTACHMENTS, ["1", "2"]),
        ([6000, 6000], ATTACHMENTS, ["1"]),
        ([40_000_000, 100], ALL, ["2"]),
    ],
    ids=["off", "both", "second too big together", "video skipped"],
)
def test_content_candidates(sizes: list[int], mode: str, chosen: list[str]) -> None:
    listed = [att(str(i), size) for i, size in enumerate(sizes, 1)]
    assert content_candidates(listed, LIMITS, mode) == chosen


def test_content_location_quotes_folder_and_provider() -> None:
    where = content_location("p/1", "INBOX/Sub folder", 7, 42)
    assert where["raw"] == "/api/v1/providers/p%2F1/messages/INBOX%2FSub%20folder/7/42/raw"
    assert where["part"].endswith("/7/42/parts/{partId}")


def test_content_location_uses_the_apis_prefix() -> None:
    assert API_PATH_PREFIX == API_PREFIX

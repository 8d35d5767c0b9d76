"""UID FETCH of a planned batch, whole or without its body (shell: IMAP).

``ingest.limits.plan_fetch_batches`` decides how each message is fetched (its ``mode``);
``fetcher_for`` gives the command for a mode. The folder's catch-up (``folder_sync``) and a
dead letter's refetch (``publish.dead_letters``) both fetch this way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from email_service.imap.fetched import Fetched, FetchedHeaders, FetchedMessage
from email_service.imap.session import ImapSession
from email_service.ingest.entry import content_sections, sections_to_fetch
from email_service.ingest.limits import HEADERS, MISSING
from email_service.settings import IngressLimits

#: Fetches the messages of some UIDs, by UID (those the server did not return are absent).
Fetcher = Callable[[Sequence[int]], Mapping[int, Fetched]]


def fetcher_for(session: ImapSession, mode: str, limits: IngressLimits) -> Fetcher | None:
    """How a batch of ``mode`` is fetched; None for ``MISSING`` (no size: nothing to ask)."""
    if mode == MISSING:
        return None
    if mode == HEADERS:
        return lambda uids: fetch_without_body(session, uids, limits)
    return lambda uids: fetch_whole(session, uids)


def fetch_whole(session: ImapSession, uids: Sequence[int]) -> dict[int, FetchedMessage]:
    """The messages among ``uids`` downloaded whole, by UID."""
    return {message.uid: message for message in session.fetch_messages(uids)}


def fetch_without_body(
    session: ImapSession, uids: Sequence[int], limits: IngressLimits
) -> dict[int, FetchedHeaders]:
    """Messages too large to download whole: header section, structure, and the body text
    parts the event will use, each cut to what the body cap can use."""
    found = {}
    for headers in session.fetch_headers(uids):
        sections = sections_to_fetch(headers, limits)
        contents = content_sections(headers, limits)
        data = session.fetch_sections(
            headers.uid,
            [(section.section, section.max_octets) for section in sections] + contents,
        )
        complete = frozenset(
            section.section
            for section in sections
            if section.complete or len(data.get(section.section, b"")) < section.max_octets
        ) | frozenset(name for name, octets in contents if len(data.get(name, b"")) >= octets)
        found[headers.uid] = dataclasses.replace(headers, sections=data, complete_sections=complete)
    return found

"""The consumer's string formats as functions: its e-mail address and UUID rules (core).

They are the same rules as the ``email`` and ``uuid`` definitions of the contract's JSON
Schema (``inbound-email-received.schema.json``); ``tests/unit/test_contract.py`` checks that
the functions and the schema agree on every example.

The e-mail rule is the product's validator's (DESIGN.md section 3): an ASCII local part of
letters, digits and ``_ ' + - .`` that does not start with a dot, has no two dots in a row
and ends in a letter, digit, ``_``, ``+`` or ``-``; ``@``; labels of ASCII letters, digits and
hyphens, each starting with a letter or digit, separated by dots; a top-level label of two
or more letters. So ``user@localhost``, IP literals, quoted local parts and non-ASCII
addresses do not fit (a non-ASCII domain fits once written in IDNA ``xn--`` form, which
``ingest.addresses.normalise_address`` does).

Date-times are written by ``iso_utc``: UTC with a ``Z``, as the contract requires.

The UUID rule is what both of the consumer's validators accept: versions 1 to 5 with the
RFC 4122 variant, or the nil UUID. Tenant ids must fit it, since ``tenantId`` (and the
``execution_id`` of per-tenant channels) carries them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from email_service.errors import TenantIdInvalid

#: ``re.ASCII`` keeps ``[A-Za-z]`` to ASCII under any flag; ``fullmatch`` (not ``$``) so a
#: trailing line feed never passes.
_EMAIL = re.compile(
    r"(?!\.)(?!.*\.\.)[A-Za-z0-9_'+.-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9-]*\.)+[A-Za-z]{2,}",
    re.ASCII,
)
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-5][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}"
    r"|00000000-0000-0000-0000-000000000000",
    re.ASCII,
)


def fits_consumer_email(address: str) -> bool:
    """Whether the product's consumer accepts ``address`` as an e-mail address."""
    return _EMAIL.fullmatch(address) is not None


def is_contract_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in the form both consumer validators accept."""
    return _UUID.fullmatch(value) is not None


def tenant_id_problem(tenant: str) -> str | None:
    """Why ``tenant`` cannot be a tenant id, or None when it can (the message names the rule)."""
    if is_contract_uuid(tenant):
        return None
    return (
        f"tenant id {tenant[:80]!r} is not a UUID: the product's tenant ids are UUIDs "
        "(version 1 to 5, e.g. 3f2b8c1e-5d4a-4e8f-9b7c-2a1d0e6f4b3c), and its event consumer "
        "drops every event whose tenantId is not one"
    )


def require_tenant_id(tenant: str) -> None:
    """Raise ``TenantIdInvalid`` (saying why) unless ``tenant`` can be a tenant id."""
    problem = tenant_id_problem(tenant)
    if problem is not None:
        raise TenantIdInvalid(problem)


def iso_utc(moment: datetime) -> str:
    """``2024-01-02T09:00:00.000Z``: UTC, milliseconds, as JavaScript's ``toISOString``; the
    contract's date-time form (``Z``, never ``+00:00``). Raises ``OverflowError`` for a moment
    whose UTC time is out of range (year 1 east of UTC)."""
    if moment.utcoffset() is None:
        raise ValueError("a naive datetime has no defined UTC time")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"

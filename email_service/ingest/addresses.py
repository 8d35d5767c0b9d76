"""Addresses as the consumer accepts them: normalised, or refused (core; the only idna importer).

``normalise_address`` turns an address from a header into the form the product's consumer
accepts (``contract.formats.fits_consumer_email``), or says it has none:

- white space around it and a final dot of the domain (``user@example.com.``) go;
- a domain in Unicode is written in IDNA ``xn--`` form, by IDNA 2008 with the UTS 46
  mapping (``idna``: the standard library's codec is IDNA 2003, which maps ``ß`` to ``ss``
  and so names another domain); ASCII domains are only lower-cased;
- a quoted local part whose content is a plain dot-atom (``"john.doe"@example.com``) is
  unquoted: RFC 5321 section 4.1.2 makes the two the same mailbox.

Nothing else is rewritten: a local part is the receiving system's to interpret, so a
non-ASCII or truly quoted one does not fit, and neither do ``user@localhost`` and IP
literals. Callers leave such recipients out and fall back for the sender (``email_data``).
"""

from __future__ import annotations

import re

import idna

from email_service.contract.formats import fits_consumer_email

#: Longest address looked at: RFC 5321 allows 254 octets of path; anything much longer is
#: not an address, and IDNA work on it would be wasted.
MAX_ADDRESS_CHARS = 512

#: A quoted local part with nothing that needs the quotes.
_PLAIN_QUOTED = re.compile(r'"([A-Za-z0-9_\'+-]+(?:\.[A-Za-z0-9_\'+-]+)*)"', re.ASCII)


def normalise_address(address: str) -> str | None:
    """``address`` in the consumer's e-mail format, or None when it cannot be written so."""
    address = address.strip()
    if len(address) > MAX_ADDRESS_CHARS or "@" not in address:
        return None
    local, _, domain = address.rpartition("@")
    plain = _PLAIN_QUOTED.fullmatch(local)
    if plain is not None:
        local = plain.group(1)
    ascii_domain = _ascii_domain(domain.rstrip("."))
    if ascii_domain is None:
        return None
    candidate = f"{local}@{ascii_domain}"
    return candidate if fits_consumer_email(candidate) else None


def _ascii_domain(domain: str) -> str | None:
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None

"""Which addresses a tenant's host may resolve to: the server-side request forgery guard (core).

A tenant names the IMAP host and the OAuth token endpoint, and this service connects to
them from inside the operator's network. Left alone, a tenant could point it at the cloud
metadata endpoint (169.254.169.254), the database, or anything else on a private network,
and read the answers back through error messages. So every address a host resolves to is
classified, and the host is refused if any of them is not public, unless
``IMAP_ALLOW_PRIVATE_HOSTS`` says private, loopback and link-local addresses are fine (a
private mail server, tests). Multicast, unspecified and reserved addresses are never a
server of a tenant's and are always refused. IPv6 forms that carry an IPv4 address (mapped
``::ffff:a.b.c.d``, 6to4, NAT64 ``64:ff9b::/96``) are judged by the address they carry.

The API decides with this when a provider is saved; ``outbound`` decides with it at every
connection, worker and API alike, and connects to the addresses it checked.

Refusals never name the address: which private address a name resolves to is itself
something a tenant should not learn.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

#: NAT64 well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


class AddressKind(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    MULTICAST = "multicast"
    RESERVED = "reserved"
    UNSPECIFIED = "unspecified"


#: Kinds a host may resolve to only when IMAP_ALLOW_PRIVATE_HOSTS=true.
ALLOWED_WHEN_PRIVATE_ALLOWED = frozenset(
    {AddressKind.PRIVATE, AddressKind.LOOPBACK, AddressKind.LINK_LOCAL}
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify_address(text: str) -> AddressKind:
    """The kind of one address as ``getaddrinfo`` gives it (an IPv6 zone is ignored)."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
        text.split("%", 1)[0]
    )
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            address = carried
    if address.is_unspecified:
        return AddressKind.UNSPECIFIED
    if address.is_loopback:
        return AddressKind.LOOPBACK
    if address.is_link_local:
        return AddressKind.LINK_LOCAL
    if address.is_multicast:
        return AddressKind.MULTICAST
    if address.is_reserved:
        return AddressKind.RESERVED
    if address.is_private:
        return AddressKind.PRIVATE
    if not address.is_global:
        return AddressKind.PRIVATE  # shared address space (100.64/10) and the like
    return AddressKind.PUBLIC


def decide_host(addresses: Sequence[str], *, allow_private: bool) -> str | None:
    """Why the host with these resolved addresses is refused, or None when it is allowed.

    Any one bad address refuses the host: the connection may go to any of them.
    """
    if not addresses:
        return "does not resolve to any address"
    for address in addresses:
        kind = classify_address(address)
        if kind is AddressKind.PUBLIC:
            continue
        if allow_private and kind in ALLOWED_WHEN_PRIVATE_ALLOWED:
            continue
        if kind in ALLOWED_WHEN_PRIVATE_ALLOWED:
            return (
                f"resolves to a {kind} address, which is refused (server-side request "
                "forgery guard); use the server's public name, or ask an operator to "
                "set IMAP_ALLOW_PRIVATE_HOSTS=true"
            )
        return f"resolves to a {kind} address, which cannot be a mail or login server"
    return None


def decide_token_url(url: str, *, allow_private: bool) -> str | None:
    """Why the service may not send a token request to ``url``, or None (its host is then
    checked like any other). Plain http only where private hosts are allowed: the request
    carries the client secret and the authorization code."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in {"https", "http"} or not hostname:
        return "is not an https URL"
    if parts.scheme == "http" and not allow_private:
        return "is not an https URL (plain http only with IMAP_ALLOW_PRIVATE_HOSTS=true)"
    return None

"""Address classification and the host decision of the SSRF guard."""

from __future__ import annotations

import pytest

from email_service.security.ssrf import AddressKind, classify_address, decide_host, decide_token_url

CASES = [
    ("93.184.216.34", AddressKind.PUBLIC),
    ("2606:4700:4700::1111", AddressKind.PUBLIC),
    ("127.0.0.1", AddressKind.LOOPBACK),
    ("127.255.0.9", AddressKind.LOOPBACK),
    ("::1", AddressKind.LOOPBACK),
    ("169.254.169.254", AddressKind.LINK_LOCAL),
    ("fe80::1%eth0", AddressKind.LINK_LOCAL),
    ("10.0.0.5", AddressKind.PRIVATE),
    ("172.16.3.4", AddressKind.PRIVATE),
    ("192.168.0.1", AddressKind.PRIVATE),
    ("100.64.0.1", AddressKind.PRIVATE),
    ("fd12:3456::1", AddressKind.PRIVATE),
    ("::ffff:127.0.0.1", AddressKind.LOOPBACK),
    ("::ffff:169.254.169.254", AddressKind.LINK_LOCAL),
    ("::ffff:10.0.0.5", AddressKind.PRIVATE),
    ("::ffff:93.184.216.34", AddressKind.PUBLIC),
    ("2002:a00:5::1", AddressKind.PRIVATE),
    ("64:ff9b::a9fe:a9fe", AddressKind.LINK_LOCAL),
    ("0.0.0.0", AddressKind.UNSPECIFIED),  # noqa: S104 - an address to classify
    ("::", AddressKind.UNSPECIFIED),
    ("224.0.0.251", AddressKind.MULTICAST),
    ("ff02::1", AddressKind.MULTICAST),
    ("240.0.0.1", AddressKind.RESERVED),
    ("255.255.255.255", AddressKind.RESERVED),
]


@pytest.mark.parametrize(("address", "kind"), CASES, ids=[c[0] for c in CASES])
def test_classify_address(address: str, kind: AddressKind) -> None:
    assert classify_address(address) is kind


@pytest.mark.parametrize(
    ("addresses", "allow_private", "refused_as"),
    [
        (["93.184.216.34"], False, None),
        (["93.184.216.34", "2606:4700:4700::1111"], False, None),
        ([], False, "does not resolve"),
        ([], True, "does not resolve"),
        (["127.0.0.1"], False, "loopback"),
        (["93.184.216.34", "10.0.0.5"], False, "private"),
        (["169.254.169.254"], False, "link-local"),
        (["127.0.0.1"], True, None),
        (["10.0.0.5", "169.254.169.254"], True, None),
        (["0.0.0.0"], True, "unspecified"),  # noqa: S104 - an address to refuse
        (["224.0.0.1"], True, "multicast"),
        (["240.0.0.1"], True, "reserved"),
    ],
    ids=[
        "public",
        "public-v4-and-v6",
        "nothing",
        "nothing-even-when-allowed",
        "loopback",
        "one-private-among-public",
        "metadata",
        "loopback-allowed",
        "private-allowed",
        "unspecified-never",
        "multicast-never",
        "reserved-never",
    ],
)
def test_decide_host(addresses: list[str], allow_private: bool, refused_as: str | None) -> None:
    reason = decide_host(addresses, allow_private=allow_private)
    if refused_as is None:
        assert reason is None
    else:
        assert reason is not None and refused_as in reason
        assert all(address not in reason for address in addresses)


def test_refusal_of_a_private_host_says_how_to_allow_it() -> None:
    reason = decide_host(["10.0.0.5"], allow_private=False)
    assert reason is not None and "IMAP_ALLOW_PRIVATE_HOSTS" in reason


@pytest.mark.parametrize(
    ("url", "allow_private", "refused"),
    [
        ("https://login.example.com/token", False, None),
        ("http://login.example.com/token", False, "https"),
        ("http://127.0.0.1:8080/token", True, None),
        ("ftp://login.example.com/token", True, "https"),
        ("https:///token", False, "https"),
        ("https://login.example.com:99999/token", False, "valid URL"),
    ],
    ids=["https", "http-refused", "http-when-private-allowed", "ftp", "no-host", "bad-port"],
)
def test_token_urls_are_https_unless_private_hosts_are_allowed(
    url: str, allow_private: bool, refused: str | None
) -> None:
    reason = decide_token_url(url, allow_private=allow_private)
    assert reason is None if refused is None else refused in (reason or "")

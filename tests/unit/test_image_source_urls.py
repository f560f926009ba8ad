"""Which image URLs a request may name: http(s) with a host; an address outside the public
internet is refused up front when it is written as an IP address (a name is checked once
resolved, when it is fetched)."""

from __future__ import annotations

import pytest

from bulkops.operations.fetch_product_images import (
    SourceError,
    check_url,
    url_host,
)
from bulkops.outside.network import is_private_literal


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/a.png",
        "http://images.example.com:8080/p/1.jpg?size=large",
        "  https://example.com/x.webp  ",
        "https://93.184.216.34/a.png",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/a.png",
    ],
)
def test_public_http_urls_are_taken(url: str) -> None:
    assert check_url(url, allow_private_networks=False) == url.strip()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (None, "MISSING_VALUE"),
        ("   ", "MISSING_VALUE"),
        ("ftp://example.com/a.png", "INVALID_URL"),
        ("file:///etc/passwd", "INVALID_URL"),
        ("javascript:alert(1)", "INVALID_URL"),
        ("example.com/a.png", "INVALID_URL"),
        ("https:///a.png", "INVALID_URL"),
        ("https://example.com:port/a.png", "INVALID_URL"),
        ("https://exa mple.com/a.png", "INVALID_URL"),
        ("https://example.com/" + "a" * 2100, "INVALID_URL"),
        ("http://127.0.0.1:8000/a.png", "PRIVATE_NETWORK"),
        ("http://10.1.2.3/a.png", "PRIVATE_NETWORK"),
        ("http://169.254.169.254/latest/meta-data", "PRIVATE_NETWORK"),
        ("http://[::1]/a.png", "PRIVATE_NETWORK"),
        ("http://[::ffff:192.168.0.1]/a.png", "PRIVATE_NETWORK"),
        ("http://0.0.0.0/a.png", "PRIVATE_NETWORK"),
    ],
)
def test_bad_urls_are_refused_with_a_code(url: str | None, code: str) -> None:
    with pytest.raises(SourceError) as caught:
        check_url(url, allow_private_networks=False)
    assert (caught.value.code, caught.value.field) == (code, "url")


def test_private_addresses_are_taken_when_allowed() -> None:
    url = "http://127.0.0.1:8000/a.png"
    assert check_url(url, allow_private_networks=True) == url


def test_names_are_left_to_the_check_after_resolution() -> None:
    assert not is_private_literal("localhost")
    assert not is_private_literal("internal.example")
    assert is_private_literal("192.168.1.1")
    assert not is_private_literal("8.8.8.8")


def test_the_limiter_key_is_the_host_in_lower_case() -> None:
    assert url_host("https://CDN.Example.com:8443/a.png") == "cdn.example.com"
    assert url_host("http://[::1]:80/a.png") == "::1"

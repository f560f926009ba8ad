"""Security headers: a Content-Security-Policy on the GraphiQL page that allows only what
bulkops serves itself, and nosniff, no referrer and no framing on every response.

That the page still works under its policy, in a real browser, is checked by
tests/e2e/test_graphiql_page.py."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support import Tenant

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    pairs = (part.strip().partition(" ") for part in policy.split(";"))
    return {name: value for name, _, value in pairs}


def assert_common_headers(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get_list(name) == [value], name


async def test_the_graphiql_page_allows_only_its_own_assets(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_common_headers(page)
    policy = directives(page)
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    # Nothing inline that the policy would block: every script and stylesheet is a file
    # under /static, served with the same headers.
    assert "<style" not in page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assets = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
    assert assets
    for path in assets:
        assert path.startswith("/static/")
        asset = await http.get(path)
        assert asset.status_code == 200, path
        assert_common_headers(asset)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/graphql"),
        ("GET", "/export/products.csv"),
        ("GET", "/jobs/1/errors.csv"),
        ("GET", "/healthz"),
    ],
)
async def test_every_other_response_runs_nothing_and_is_not_sniffed_or_framed(
    http: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    response = await http.request(
        method,
        path,
        json={"query": "{ products { totalCount } }"} if method == "POST" else None,
        headers={"Authorization": f"Bearer {tenant.token}"},
    )
    assert response.status_code in (200, 404), response.text
    # Headers a route sets itself (downloads send nosniff) are not repeated.
    assert_common_headers(response)
    policy = directives(response)
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"


async def test_refusals_carry_the_headers_too(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 401
    assert_common_headers(response)

from __future__ import annotations

from tests.support import GraphQLClient, Tenant, make_products


async def test_products_query_lists_the_tenants_catalog(
    gql: GraphQLClient, owner, storage, tenant: Tenant
) -> None:
    await make_products(owner, storage, tenant, 3)
    data = await gql(
        """{ products(first: 2) {
               totalCount pageInfo { hasNextPage }
               edges { node { sku images { url } identifiers { kind value } } } } }"""
    )
    assert data["products"]["totalCount"] == 3
    assert data["products"]["pageInfo"]["hasNextPage"] is True
    edges = data["products"]["edges"]
    assert [e["node"]["sku"] for e in edges] == ["SKU-0000001", "SKU-0000002"]
    assert edges[0]["node"]["identifiers"] == [{"kind": "MPN", "value": "MPN-1"}]
    assert edges[0]["node"]["images"][0]["url"].endswith("/images/1.svg")

from __future__ import annotations

from tests.support import GraphQLClient, Tenant, make_products


async def test_products_query_lists_the_tenants_catalog(gql, owner, storage, tenant: Tenant):
    await make_products(owner, storage, tenant, 3)
    data = await gql("{ products(first: 2) { totalCount edges { node { sku images { url } identifiers { kind value } } } pageInfo { hasNextPage } } }")
    assert data["products"]["totalCount"] == 3
    assert data["products"]["pageInfo"]["hasNextPage"] is True
    assert len(data["products"]["edges"]) == 2

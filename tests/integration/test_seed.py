"""`bulkops seed` adds products to any tenant, any number of times."""

from __future__ import annotations

import asyncpg

from bulkops.dev.seed import seed_products
from bulkops.storage import Storage


async def test_seeding_again_after_deletions_adds_new_products(
    owner: asyncpg.Connection, storage: Storage
) -> None:
    assert await seed_products(owner, storage, "seeded", 30) == 30
    # Products deleted from the middle and the end: a count no longer says what is taken.
    await owner.execute(
        """DELETE FROM products WHERE sku IN ('SKU-00000003', 'SKU-00000029', 'SKU-00000030')"""
    )
    assert await seed_products(owner, storage, "seeded", 10) == 10
    skus = [r["sku"] for r in await owner.fetch("SELECT sku FROM products ORDER BY sku")]
    assert len(skus) == 37
    assert len(set(skus)) == 37
    assert skus[-1] == "SKU-00000038"
    assert await owner.fetchval("SELECT count(DISTINCT barcode) FROM products") == 37

"""Which images a deleteImages request names."""

from __future__ import annotations

import asyncpg

from bulkops.db import images as images_db
from bulkops.db import products as products_db
from bulkops.db.pool import tenant_transaction
from bulkops.errors import InputError, NotFoundError
from bulkops.selection import Selection

FIELD = ["selection", "products", "ids"]


async def images_of_products(
    pool: asyncpg.Pool, tenant_id: str, products: Selection, *, max_ids: int
) -> Selection:
    """The images of a product selection. A filter stays a filter (walked as the job goes);
    explicit product ids become the ids of the images those products have now, so inline
    runs and jobs walk the same image ids."""
    if products.ids is None:
        return products
    async with tenant_transaction(pool, tenant_id) as conn:
        missing = await products_db.missing_ids(conn, list(products.ids))
        if missing:
            shown = ", ".join(str(i) for i in missing[:10])
            more = " and more" if len(missing) > 10 else ""
            raise NotFoundError(f"No product with id {shown}{more}.", field=FIELD)
        image_ids = await images_db.image_ids_of_products(conn, list(products.ids))
    if len(image_ids) > max_ids:
        raise InputError(
            f"These products have {len(image_ids)} images, more than the {max_ids} a "
            "selection may hold; select the products by filter instead.",
            code="TOO_MANY_IDS",
            field=FIELD,
        )
    return Selection(ids=tuple(image_ids))

-- Trade item numbers name one product: within a tenant, a GTIN, EAN or UPC value belongs to
-- at most one product. updateProducts finds clashes before it writes (an item error, not a
-- crash); this index is the guarantee behind that check. Other kinds (MPN, ...) may repeat.
-- Keep the list in step with UNIQUE_IDENTIFIER_KINDS in bulkops/operations/update_products.py.
CREATE UNIQUE INDEX product_identifiers_unique_code_idx
  ON product_identifiers (tenant_id, kind, value)
  WHERE kind IN ('GTIN', 'EAN', 'UPC');

-- deleteImages walks a tenant's images in id order.
CREATE INDEX product_images_tenant_id_idx ON product_images (tenant_id, id);

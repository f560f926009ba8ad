-- A product's description: free text, written by import, updateProducts and enrichProducts.
-- The table's row-level security policy and its grants cover the new column as they are
-- (they are per row and per table); no function returns a products row.
ALTER TABLE products ADD COLUMN description text;

-- An uploaded file's description column, staged as the other text columns are.
ALTER TABLE import_rows ADD COLUMN description text;

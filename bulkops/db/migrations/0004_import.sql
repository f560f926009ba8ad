-- importProducts: an uploaded file's rows are staged here when the request is accepted, and
-- the run (inline, or a job) walks them in row order. A job's rows go in the transaction
-- that ends it; an inline run's right after it; remove_stale_imports() sweeps the rest (an
-- API process that died mid-request, a job cancelled before it started).

CREATE TABLE import_uploads (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  row_count int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX import_uploads_created_idx ON import_uploads (created_at);

-- One row of a file, values trimmed ('' stored as null) but otherwise as given: the batch
-- step checks them. A row the file itself spoils (broken quoting, bytes that are not UTF-8,
-- an overlong line, a SKU already on an earlier row) carries its error instead. The id is
-- the item a run walks (in row order: rows are inserted in file order); no foreign key to
-- import_uploads, whose check would slow every staged row down.
CREATE TABLE import_rows (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  upload_id uuid NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  row_number int NOT NULL,
  sku text,
  name text,
  barcode text,
  brand text,
  category text,
  status text,
  price text,
  attributes text,
  -- [[KIND, value, column], ...]: the identifier:KIND columns and the identifiers object.
  identifiers jsonb NOT NULL DEFAULT '[]',
  error_code text,
  error_column text,
  error_message text
);
CREATE INDEX import_rows_upload_idx ON import_rows (upload_id, id);

-- Row errors of an uploaded file name the column they are in.
ALTER TABLE job_errors ADD COLUMN column_name text;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['import_uploads', 'import_rows']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;

-- Staged uploads older than p_age that no unfinished job walks, then every row whose upload
-- is gone (those, and a deleted tenant's). Rows still being staged are not visible here.
-- Returns how many uploads were removed.
CREATE FUNCTION remove_stale_imports(p_age interval) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  DECLARE
    removed bigint;
  BEGIN
    WITH stale AS (
      DELETE FROM import_uploads u
      WHERE u.created_at < now() - p_age
        AND NOT EXISTS (
          SELECT 1 FROM jobs j
          WHERE j.status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING')
            AND j.selection->'staged'->>'upload_id' = u.id::text)
      RETURNING 1)
    SELECT count(*) INTO removed FROM stale;
    DELETE FROM import_rows r
    WHERE NOT EXISTS (SELECT 1 FROM import_uploads u WHERE u.id = r.upload_id);
    RETURN removed;
  END
  $$;

REVOKE ALL ON FUNCTION remove_stale_imports(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_stale_imports(interval) TO bulkops_app;

-- The planner estimates how many products a tenant has from the statistics; an import that
-- makes a tenant's catalog many times larger than they say gets plans that scan all of its
-- products for every batch. An import batch calls this first: it refreshes the statistics
-- of the catalog when the rows changed since the last ANALYZE outnumber what they think the
-- tenant has (at most every 5 seconds, never waiting for a lock). Returns whether it did.
CREATE FUNCTION refresh_catalog_statistics() RETURNS boolean
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lock_timeout = '100ms'
  AS $$
  DECLARE
    known float8;
  BEGIN
    SELECT COALESCE(sum(m.freq), 0) * max(c.reltuples) INTO known
    FROM pg_class c
    LEFT JOIN pg_stats s
      ON s.schemaname = 'public' AND s.tablename = 'products' AND s.attname = 'tenant_id'
    LEFT JOIN LATERAL unnest(s.most_common_vals::text::uuid[], s.most_common_freqs)
      AS m(tenant, freq) ON m.tenant = current_tenant_id()
    WHERE c.oid = 'products'::regclass;
    IF pg_stat_get_mod_since_analyze('products'::regclass) < GREATEST(10000, known)
       OR GREATEST(pg_stat_get_last_analyze_time('products'::regclass),
                   pg_stat_get_last_autoanalyze_time('products'::regclass))
          > now() - interval '5 seconds' THEN
      RETURN false;
    END IF;
    ANALYZE products, product_identifiers;
    RETURN true;
  EXCEPTION WHEN lock_not_available THEN
    RETURN false;
  END
  $$;

REVOKE ALL ON FUNCTION refresh_catalog_statistics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_catalog_statistics() TO bulkops_app;

-- matchProducts: the input rows of a request are staged here when it is accepted (inline
-- rows too), and each batch writes its rows' outcomes next to them. Staged inputs are
-- removed after the job retention, once no job names them (remove_expired_match_inputs).

-- The normal form names are compared in: lower case, trimmed, runs of whitespace as one
-- space; '' for null, so that "no brand" compares equal to "no brand" and can be indexed.
CREATE FUNCTION match_norm(t text) RETURNS text
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT COALESCE(lower(btrim(regexp_replace(t, '\s+', ' ', 'g'))), '') $$;

-- The NAME_BRAND rule (exact, normalized) and the FUZZY_NAME rule (trigram similarity).
-- Trigrams ignore case and whitespace anyway, so the fuzzy rule compares names as they are:
-- the index's rechecks then cost no regular expression (about a sixth faster).
CREATE INDEX products_match_name_brand_idx
  ON products (tenant_id, match_norm(brand), match_norm(name));
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);

CREATE TABLE match_inputs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  -- The columns of the input as given (the CSV header), kept in the results download.
  columns text[] NOT NULL,
  row_count int NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX match_inputs_tenant_created_idx ON match_inputs (tenant_id, created_at);

CREATE TABLE match_rows (
  input_id uuid NOT NULL REFERENCES match_inputs ON DELETE CASCADE,
  row_number int NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  -- Barcode-like values: the barcode and GTIN/EAN/UPC identifiers of the row.
  codes text[] NOT NULL DEFAULT '{}',
  -- Other identifiers, pairwise.
  identifier_kinds text[] NOT NULL DEFAULT '{}',
  identifier_values text[] NOT NULL DEFAULT '{}',
  sku text,
  name text,
  brand text,
  name_key text GENERATED ALWAYS AS (match_norm(name)) STORED,
  brand_key text GENERATED ALWAYS AS (match_norm(brand)) STORED,
  -- The row as given, column -> value.
  fields jsonb NOT NULL DEFAULT '{}',
  -- Set for a row that cannot be matched (nothing to match on, unreadable): its batch
  -- reports it as an item error.
  error_code text,
  error_message text,
  PRIMARY KEY (input_id, row_number)
);

-- No foreign key to products: a result is a record of what matched, and a product deleted
-- since shows as null (a foreign key would also make every product delete look here).
CREATE TABLE match_results (
  input_id uuid NOT NULL,
  row_number int NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  status text NOT NULL CHECK (status IN ('MATCHED', 'UNMATCHED', 'INVALID')),
  product_id bigint,
  matched_by text
    CHECK (matched_by IN ('BARCODE', 'IDENTIFIER', 'SKU', 'NAME_BRAND', 'FUZZY_NAME')),
  score real,
  -- [{"id": 12, "score": 0.42}, ...], best first; only for unmatched rows.
  candidates jsonb NOT NULL DEFAULT '[]',
  PRIMARY KEY (input_id, row_number),
  FOREIGN KEY (input_id, row_number) REFERENCES match_rows ON DELETE CASCADE
);

-- Which job works on an input (retention keeps inputs a job still shows).
CREATE INDEX jobs_match_input_idx ON jobs ((params->>'input_id'))
  WHERE operation = 'matchProducts';

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['match_inputs', 'match_rows', 'match_results']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;

-- The name rules as functions of the table owner. Under row-level security PostgreSQL
-- applies a policy before any condition that is not leakproof, and neither match_norm()
-- nor pg_trgm's `%` is: as bulkops_app, the two indexes above could not be used and every
-- row would read the tenant's whole catalog. These functions see exactly what the policy
-- lets bulkops_app see: rows of current_tenant_id(), the same setting the policies compare.

-- NAME_BRAND: normalized name and brand equal; the lowest product id among equals.
CREATE FUNCTION match_name_brand(p_input uuid, p_rows int[])
  RETURNS TABLE (row_number int, product_id bigint)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT DISTINCT ON (r.row_number) r.row_number, p.id
    FROM match_rows r
    JOIN products p
      ON p.tenant_id = r.tenant_id
     AND match_norm(p.brand) = r.brand_key AND match_norm(p.name) = r.name_key
    WHERE r.input_id = p_input AND r.row_number = ANY(p_rows)
      AND r.tenant_id = current_tenant_id() AND r.name_key <> ''
    ORDER BY r.row_number, p.id
  $$;

-- Up to p_limit products per row whose names are at least p_min similar (trigram
-- similarity) to the row's, best first (then the lowest id): within the row's brand, or, with p_any_brand, among
-- all products for a row without one.
CREATE FUNCTION match_similar_names(
    p_input uuid, p_rows int[], p_min real, p_limit int, p_any_brand boolean)
  RETURNS TABLE (row_number int, product_id bigint, score real)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    -- `%` (which the trigram index serves) compares with this setting.
    SELECT set_config('pg_trgm.similarity_threshold', p_min::text, true);
    SELECT r.row_number, hit.id, hit.score
    FROM match_rows r
    CROSS JOIN LATERAL (
      SELECT p.id, similarity(p.name, r.name) AS score
      FROM products p
      WHERE p.tenant_id = r.tenant_id AND p.name % r.name
        AND (match_norm(p.brand) = r.brand_key OR (p_any_brand AND r.brand_key = ''))
      ORDER BY score DESC, p.id
      LIMIT p_limit) hit
    WHERE r.input_id = p_input AND r.row_number = ANY(p_rows)
      AND r.tenant_id = current_tenant_id() AND r.name_key <> ''
      AND hit.score >= p_min
    ORDER BY r.row_number, hit.score DESC, hit.id
  $$;

REVOKE ALL ON FUNCTION match_name_brand(uuid, int[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION match_similar_names(uuid, int[], real, int, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION match_name_brand(uuid, int[]) TO bulkops_app;
GRANT EXECUTE ON FUNCTION match_similar_names(uuid, int[], real, int, boolean) TO bulkops_app;

-- Staged inputs older than the retention that no job names any more (inline requests have
-- none; a job's go with it). Returns how many inputs were removed.
CREATE FUNCTION remove_expired_match_inputs(p_retention interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH gone AS (
      DELETE FROM match_inputs mi
      WHERE mi.created_at < now() - p_retention
        AND NOT EXISTS (SELECT 1 FROM jobs j
                        WHERE j.operation = 'matchProducts'
                          AND j.params->>'input_id' = mi.id::text)
      RETURNING 1)
    SELECT count(*) FROM gone
  $$;

REVOKE ALL ON FUNCTION remove_expired_match_inputs(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_expired_match_inputs(interval) TO bulkops_app;

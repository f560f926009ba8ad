-- A job's explicit ids as sorted chunks of up to 5,000 in one array each, instead of a row
-- per id: accepting 100,000 ids writes 20 rows instead of 100,000 rows and their index
-- entries (most of the time of accepting such a mutation). Chunks of one job hold disjoint
-- ranges in key order, so the next ids past a cursor are in the chunk whose last id is the
-- first past it, and the one after: found along the primary key (job_id, last_id).
-- The arrays are stored uncompressed (EXTERNAL): ids compress poorly and compressing them
-- cost more than writing them.
CREATE TABLE job_item_chunks (
  job_id uuid NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  first_id bigint NOT NULL,
  last_id bigint NOT NULL,
  ids bigint[] NOT NULL,
  PRIMARY KEY (job_id, last_id)
);
ALTER TABLE job_item_chunks ALTER COLUMN ids SET STORAGE EXTERNAL;
ALTER TABLE job_item_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON job_item_chunks USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON job_item_chunks TO bulkops_app;

INSERT INTO job_item_chunks (job_id, tenant_id, first_id, last_id, ids)
SELECT job_id, tenant_id, min(item_id), max(item_id), array_agg(item_id ORDER BY item_id)
FROM (SELECT job_id, tenant_id, item_id,
             (row_number() OVER (PARTITION BY job_id ORDER BY item_id) - 1) / 5000 AS chunk
      FROM job_items) numbered
GROUP BY job_id, tenant_id, chunk;

-- Sorted unique ids as the chunks of `p_job_id`, in the caller's transaction (and tenant);
-- returns how many ids. Invoker's rights: row-level security applies.
CREATE FUNCTION store_job_items(p_job_id uuid, p_ids bigint[])
  RETURNS bigint
  LANGUAGE sql
  AS $$
    INSERT INTO job_item_chunks (job_id, first_id, last_id, ids)
    SELECT p_job_id, chunk[1], chunk[cardinality(chunk)], chunk
    FROM generate_series(1, cardinality(p_ids), 5000) AS s,
         LATERAL (SELECT p_ids[s:s + 4999] AS chunk) c;
    SELECT COALESCE(cardinality(p_ids), 0)::bigint;
  $$;

GRANT EXECUTE ON FUNCTION store_job_items(uuid, bigint[]) TO bulkops_app;

-- The next ids of a job's stored selection past its cursor, in key order: from the chunks
-- whose last id is past it (at most one partly used), enough of them for `p_limit`, found
-- along the primary key whatever the statistics say (a job's chunks are written just before
-- it runs). Sorting what they hold (a few thousand ids) is cheap.
CREATE OR REPLACE FUNCTION job_item_batch(p_job_id uuid, p_after bigint, p_limit int)
  RETURNS SETOF bigint
  LANGUAGE sql STABLE
  SET enable_bitmapscan = off
  SET enable_seqscan = off
  SET enable_sort = on
  AS $$
    SELECT id FROM (
      SELECT ids FROM job_item_chunks
      WHERE job_id = p_job_id AND last_id > p_after AND tenant_id = current_tenant_id()
      ORDER BY last_id
      LIMIT p_limit / 5000 + 2) c,
      unnest(c.ids) AS id
    WHERE id > p_after
    ORDER BY id
    LIMIT p_limit
  $$;

-- Deleting jobs removes their items and outcome sets, once per statement.
CREATE OR REPLACE FUNCTION remove_job_items() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  BEGIN
    DELETE FROM job_item_chunks i USING removed_jobs r WHERE i.job_id = r.id;
    DELETE FROM job_outcomes o USING removed_jobs r WHERE o.job_id = r.id;
    RETURN NULL;
  END
  $$;

DROP TABLE job_items;

-- fetchProductImages: the sources of a request (given inline or uploaded) are staged here
-- when it is accepted, and the run walks them by row number. They stay while a job names
-- them (retryJob fetches a job's failed rows again) and go after the job retention
-- otherwise (remove_expired_image_sources).

CREATE TABLE image_sources (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  row_count int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX image_sources_tenant_created_idx ON image_sources (tenant_id, created_at);

-- One source: the product it names (by id, by SKU, or both, which must agree) and the URL,
-- trimmed. A source that cannot be fetched (no product named, a URL that is not http(s),
-- an unreadable row of the file) carries its error instead: its batch reports it.
CREATE TABLE image_source_rows (
  source_id uuid NOT NULL REFERENCES image_sources ON DELETE CASCADE,
  row_number int NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  product_id bigint,
  sku text,
  url text,
  error_code text,
  error_column text,
  error_message text,
  PRIMARY KEY (source_id, row_number)
);

-- Where a fetched image came from: the same URL given again for the product is skipped.
ALTER TABLE product_images ADD COLUMN source_url text;

-- Which job walks a staged source (retention keeps the sources a job still names).
CREATE INDEX jobs_image_source_idx ON jobs ((params->>'source_id'))
  WHERE operation = 'fetchProductImages';

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['image_sources', 'image_source_rows']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;

-- Staged sources older than the retention that no job names any more (inline requests have
-- none; a job's go once the job is removed). Returns how many were removed.
CREATE FUNCTION remove_expired_image_sources(p_retention interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH gone AS (
      DELETE FROM image_sources s
      WHERE s.created_at < now() - p_retention
        AND NOT EXISTS (SELECT 1 FROM jobs j
                        WHERE j.operation = 'fetchProductImages'
                          AND j.params->>'source_id' = s.id::text)
      RETURNING 1)
    SELECT count(*) FROM gone
  $$;

REVOKE ALL ON FUNCTION remove_expired_image_sources(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_expired_image_sources(interval) TO bulkops_app;

-- Leases for running jobs, idempotency keys, and the cross-tenant housekeeping that the
-- reconciler and the retention cleanup need (as owner-defined functions, so the
-- application role still never reads another tenant's rows directly).

ALTER TABLE jobs
  ADD COLUMN lease_owner text,
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN idempotency_key text;

CREATE INDEX jobs_tenant_queued_idx ON jobs (tenant_id, created_at) WHERE status = 'QUEUED';

CREATE TABLE idempotency_keys (
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  key text NOT NULL,
  operation text NOT NULL,
  request_hash bytea NOT NULL,
  -- NULL while the first request is still being answered.
  response jsonb,
  locked_until timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys
  USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO bulkops_app;

-- Unfinished jobs that no live worker holds: the reconciler decides whether the queue
-- still has them.
CREATE FUNCTION unheld_jobs(p_stale interval, p_limit int)
  RETURNS TABLE (id uuid, tenant_id uuid, priority text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT j.id, j.tenant_id, j.priority FROM jobs j
    WHERE j.status IN ('QUEUED', 'RUNNING', 'CANCELLING')
      AND (j.lease_expires_at IS NULL OR j.lease_expires_at < clock_timestamp())
      AND j.updated_at < clock_timestamp() - p_stale
    ORDER BY j.updated_at
    LIMIT p_limit
  $$;

-- Finished jobs (with their items and errors) older than the retention, and expired
-- idempotency keys. Returns the number of jobs removed.
CREATE FUNCTION remove_expired(p_job_retention interval) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  DECLARE
    removed bigint;
  BEGIN
    DELETE FROM idempotency_keys WHERE expires_at < now();
    WITH gone AS (
      DELETE FROM jobs
      WHERE status IN ('CANCELLED', 'SUCCEEDED', 'PARTIAL', 'FAILED')
        AND finished_at < now() - p_job_retention
      RETURNING 1)
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
  END
  $$;

REVOKE ALL ON FUNCTION unheld_jobs(interval, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION remove_expired(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION unheld_jobs(interval, int) TO bulkops_app;
GRANT EXECUTE ON FUNCTION remove_expired(interval) TO bulkops_app;

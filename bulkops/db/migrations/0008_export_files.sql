-- Files written by exportProducts. A file is written batch by batch: `bytes` and `rows`
-- are what committed batches wrote, so a batch re-run after a crash first cuts the file
-- back to `bytes` (a batch is in the file exactly once). `expires_at` is when its signed
-- links stop working; the hourly cleanup then queues the file for removal.
CREATE TABLE export_files (
  id uuid PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  storage_key text NOT NULL,
  format text NOT NULL CHECK (format IN ('csv', 'jsonl')),
  rows bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX export_files_expiry_idx ON export_files (expires_at);

ALTER TABLE export_files ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON export_files
  USING (tenant_id = current_tenant_id()) WITH CHECK (tenant_id = current_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON export_files TO bulkops_app;

-- An export job names its file in its parameters.
CREATE INDEX jobs_export_file_idx ON jobs ((params->>'file_id'))
  WHERE operation = 'exportProducts';

-- Export files to remove, queued for the file purge with their rows deleted: those whose
-- links expired (unless a job still writes them), those of jobs that ended without a
-- result (cancelled or failed), and those of jobs past the job retention. Returns how
-- many files were queued.
CREATE FUNCTION remove_expired_exports(p_job_retention interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH gone AS (
      DELETE FROM export_files f
      WHERE (f.expires_at < now()
             AND NOT EXISTS (
               SELECT 1 FROM jobs j
               WHERE j.operation = 'exportProducts' AND j.params->>'file_id' = f.id::text
                 AND j.status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING')))
         OR EXISTS (
               SELECT 1 FROM jobs j
               WHERE j.operation = 'exportProducts' AND j.params->>'file_id' = f.id::text
                 AND (j.status IN ('CANCELLED', 'FAILED')
                      OR (j.status IN ('SUCCEEDED', 'PARTIAL')
                          AND j.finished_at < now() - p_job_retention)))
      RETURNING f.tenant_id, f.storage_key),
    queued AS (
      INSERT INTO file_deletions (tenant_id, storage_key)
      SELECT tenant_id, storage_key FROM gone
      RETURNING 1)
    SELECT count(*) FROM queued
  $$;

REVOKE ALL ON FUNCTION remove_expired_exports(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_expired_exports(interval) TO bulkops_app;

-- The last product id an export file holds, recorded with each batch: a batch whose ids
-- do not come after it (a retried job naming the same file) is refused instead of
-- appending those rows a second time.
ALTER TABLE export_files ADD COLUMN last_id bigint NOT NULL DEFAULT 0;

-- Export files to remove, queued for the file purge with their rows deleted: none that a
-- job still writes; of the others, those whose links expired, and those whose jobs all
-- ended without a result (cancelled or failed) or are past the job retention. Returns how
-- many files were queued.
CREATE OR REPLACE FUNCTION remove_expired_exports(p_job_retention interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH named AS (
      SELECT f.id,
             COALESCE(bool_or(j.status IN ('QUEUED', 'RUNNING', 'PAUSED', 'CANCELLING')),
                      false) AS writing,
             COALESCE(bool_or(j.status IN ('SUCCEEDED', 'PARTIAL')
                              AND j.finished_at >= now() - p_job_retention), false) AS kept,
             count(j.id) > 0 AS has_job
      FROM export_files f
      LEFT JOIN jobs j ON j.operation = 'exportProducts' AND j.params->>'file_id' = f.id::text
      GROUP BY f.id),
    gone AS (
      DELETE FROM export_files f USING named n
      WHERE f.id = n.id AND NOT n.writing
        AND (f.expires_at < now() OR (n.has_job AND NOT n.kept))
      RETURNING f.tenant_id, f.storage_key),
    queued AS (
      INSERT INTO file_deletions (tenant_id, storage_key)
      SELECT tenant_id, storage_key FROM gone
      RETURNING 1)
    SELECT count(*) FROM queued
  $$;

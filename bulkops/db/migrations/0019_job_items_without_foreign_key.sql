-- A job's explicit ids are written in the job row's own transaction (or, for a retry, right
-- after its child job's row), so the foreign key from job_items to jobs checked nothing that
-- could fail, one lookup of the job row per id: with 100,000 ids that check was most of the
-- time of accepting the mutation. Deleting jobs (retention, a tenant's removal) still
-- removes their items, once per statement, whatever tenant the deleting transaction is set
-- to.
ALTER TABLE job_items DROP CONSTRAINT job_items_job_id_fkey;

CREATE FUNCTION remove_job_items() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  BEGIN
    DELETE FROM job_items i USING removed_jobs r WHERE i.job_id = r.id;
    RETURN NULL;
  END
  $$;

REVOKE ALL ON FUNCTION remove_job_items() FROM PUBLIC;

CREATE TRIGGER jobs_remove_items AFTER DELETE ON jobs
  REFERENCING OLD TABLE AS removed_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION remove_job_items();

-- Chains: a job may carry the steps that run after it (`chain`), and points to the job of
-- its next step once that is made (`next_id`, in the transaction that ends this one).
ALTER TABLE jobs ADD COLUMN chain jsonb, ADD COLUMN next_id uuid;

-- The products a chain step's outcome holds (its succeeded items, a match's matched
-- products), written with each batch, so the next step's selection is a durable set of
-- ids. A retry of the step starts from a copy of the set and adds to it.
CREATE TABLE job_outcomes (
  job_id uuid NOT NULL,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id(),
  item_id bigint NOT NULL,
  PRIMARY KEY (job_id, item_id)
);
ALTER TABLE job_outcomes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON job_outcomes USING (tenant_id = current_tenant_id())
  WITH CHECK (tenant_id = current_tenant_id());
GRANT SELECT, INSERT, UPDATE, DELETE ON job_outcomes TO bulkops_app;

-- Deleting jobs removes their outcome sets with their items, once per statement.
CREATE OR REPLACE FUNCTION remove_job_items() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  BEGIN
    DELETE FROM job_items i USING removed_jobs r WHERE i.job_id = r.id;
    DELETE FROM job_outcomes o USING removed_jobs r WHERE o.job_id = r.id;
    RETURN NULL;
  END
  $$;

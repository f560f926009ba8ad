-- The next ids of a job's stored selection past its cursor, in key order, walked along the
-- primary key (job_id, item_id) whatever the table's statistics say. A job's items are
-- written just before it runs, so its first batches would otherwise be planned on
-- statistics that predate them: the planner then expects a handful of rows and reads and
-- sorts every remaining item of the job for each batch (100,000 items: ~100 ms a batch).
-- With bitmap scans, sequential scans and sorts off for this one query, the ordered primary
-- key scan that stops after `p_limit` rows is the only plan left. Invoker's rights: the
-- caller's row-level security applies.
CREATE FUNCTION job_item_batch(p_job_id uuid, p_after bigint, p_limit int)
  RETURNS SETOF bigint
  LANGUAGE sql STABLE
  SET enable_bitmapscan = off
  SET enable_seqscan = off
  SET enable_sort = off
  AS $$
    SELECT item_id FROM job_items
    WHERE job_id = p_job_id AND item_id > p_after AND tenant_id = current_tenant_id()
    ORDER BY item_id
    LIMIT p_limit
  $$;

GRANT EXECUTE ON FUNCTION job_item_batch(uuid, bigint, int) TO bulkops_app;

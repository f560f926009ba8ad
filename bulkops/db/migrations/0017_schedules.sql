-- Schedules: a bulk mutation and its arguments run on a cron expression in a time zone,
-- and one row per tick saying what became of it. The tick row's (schedule_id, tick_at)
-- is unique, so a tick fires once however many workers look at it.

CREATE TABLE schedules (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  name text NOT NULL,
  cron text NOT NULL,
  timezone text NOT NULL,
  overlap text NOT NULL DEFAULT 'SKIP'
    CHECK (overlap IN ('SKIP', 'BUFFER_ONE', 'CANCEL_OTHER', 'ALLOW')),
  catchup_window_seconds int NOT NULL DEFAULT 300 CHECK (catchup_window_seconds >= 0),
  operation text NOT NULL,
  arguments jsonb NOT NULL,
  created_by text,
  paused boolean NOT NULL DEFAULT false,
  -- When it was paused: resuming fires none of the ticks from before.
  paused_at timestamptz,
  -- The first tick not yet handled; the tick loop takes schedules whose time has come.
  next_run_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE NOT paused;
CREATE INDEX schedules_tenant_idx ON schedules (tenant_id, created_at, id);

CREATE TABLE schedule_ticks (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  schedule_id uuid NOT NULL REFERENCES schedules ON DELETE CASCADE,
  tick_at timestamptz NOT NULL,
  -- MANUAL for runScheduleNow, else the cron tick.
  kind text NOT NULL DEFAULT 'CRON' CHECK (kind IN ('CRON', 'MANUAL')),
  outcome text NOT NULL
    CHECK (outcome IN ('PENDING', 'FIRED', 'SKIPPED', 'BUFFERED', 'REJECTED')),
  -- Why a tick was skipped (OVERLAP, MISSED, BUFFER_FULL, PAUSED) or refused (its message).
  reason text,
  job_id uuid REFERENCES jobs ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (schedule_id, tick_at)
);
CREATE INDEX schedule_ticks_schedule_idx ON schedule_ticks (schedule_id, tick_at DESC);
CREATE INDEX schedule_ticks_job_idx ON schedule_ticks (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX schedule_ticks_waiting_idx ON schedule_ticks (tenant_id)
  WHERE outcome IN ('BUFFERED', 'PENDING');

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['schedules', 'schedule_ticks'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;

-- The tick loop spans every tenant: which tenants have a schedule whose time has come, a
-- buffered tick waiting for its schedule's previous job, or a tick being fired (whose
-- worker may have died).
CREATE FUNCTION tenants_with_due_schedules(p_now timestamptz)
  RETURNS TABLE (tenant_id uuid)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$
    SELECT s.tenant_id FROM schedules s WHERE NOT s.paused AND s.next_run_at <= p_now
    UNION
    SELECT t.tenant_id FROM schedule_ticks t WHERE t.outcome IN ('BUFFERED', 'PENDING')
  $$;
REVOKE ALL ON FUNCTION tenants_with_due_schedules(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_with_due_schedules(timestamptz) TO bulkops_app;

-- Ticks older than the job retention, of every tenant (the housekeeping cron's).
CREATE FUNCTION remove_expired_schedule_ticks(p_retention interval) RETURNS bigint
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  DECLARE
    removed bigint;
  BEGIN
    WITH gone AS (
      DELETE FROM schedule_ticks
      WHERE tick_at < now() - p_retention AND outcome NOT IN ('PENDING', 'BUFFERED')
      RETURNING 1)
    SELECT count(*) INTO removed FROM gone;
    RETURN removed;
  END
  $$;
REVOKE ALL ON FUNCTION remove_expired_schedule_ticks(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_expired_schedule_ticks(interval) TO bulkops_app;

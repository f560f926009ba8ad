-- Webhooks: a tenant's endpoints, and an outbox of deliveries written by a trigger on
-- jobs in the same transaction as the job's state change (an event is delivered at least
-- once, and none is sent for a change that rolled back).

CREATE TABLE webhook_endpoints (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  url text NOT NULL,
  -- The event names delivered; empty: every event.
  events text[] NOT NULL DEFAULT '{}',
  description text,
  enabled boolean NOT NULL DEFAULT true,
  disabled_reason text,
  -- whsec_ + base64; after a rotation the previous secret signs too until it expires.
  secret text NOT NULL,
  previous_secret text,
  previous_secret_expires_at timestamptz,
  -- Since when every attempt has failed (NULL after a success): an endpoint failing for
  -- longer than the setting allows is disabled.
  failing_since timestamptz,
  last_success_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant_idx ON webhook_endpoints (tenant_id, created_at);
CREATE INDEX webhook_endpoints_enabled_idx ON webhook_endpoints (tenant_id) WHERE enabled;

-- One event for one endpoint. `event_id` (msg_…) is the webhook-id header, the same on
-- every attempt; `payload` is the body, fixed when the event happened. A PENDING delivery
-- is sent once `next_attempt_at` has come; a worker sending it pushes that ahead (its
-- lease), so a delivery whose worker died is sent again later.
CREATE TABLE webhook_deliveries (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seq bigint GENERATED ALWAYS AS IDENTITY,
  tenant_id uuid NOT NULL DEFAULT current_tenant_id() REFERENCES tenants ON DELETE CASCADE,
  endpoint_id uuid NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
  event_id text NOT NULL,
  event text NOT NULL,
  job_id uuid,
  payload jsonb NOT NULL,
  status text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
  attempts int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz DEFAULT now(),
  last_response_status int,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
  WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, seq DESC);
CREATE INDEX webhook_deliveries_created_idx ON webhook_deliveries (created_at);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_deliveries']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format(
      'CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant_id()) '
      'WITH CHECK (tenant_id = current_tenant_id())', t);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO bulkops_app', t);
  END LOOP;
END
$$;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO bulkops_app;

-- The event a job's insert or status change is, or NULL. `job.started` is the first
-- RUNNING only (later slices and resumes are no event).
CREATE FUNCTION job_event(p_old jsonb, p_new jobs) RETURNS text
  LANGUAGE sql IMMUTABLE
  AS $$
    SELECT CASE
      WHEN p_old IS NULL THEN CASE WHEN p_new.status = 'QUEUED' THEN 'job.queued' END
      WHEN p_new.status = 'RUNNING' AND p_old->>'started_at' IS NULL THEN 'job.started'
      WHEN p_new.status = 'PAUSED' THEN 'job.paused'
      WHEN p_new.status = 'SUCCEEDED' THEN 'job.succeeded'
      WHEN p_new.status = 'PARTIAL' THEN 'job.partial'
      WHEN p_new.status = 'FAILED' THEN 'job.failed'
      WHEN p_new.status = 'CANCELLED' THEN 'job.cancelled'
    END
  $$;

-- One delivery of the event `p_event` per enabled endpoint of `p_tenant` whose filter takes
-- it, all under one event id (msg_…), the body `{"type", "timestamp", "data": p_data}` fixed
-- now. Called in the transaction of the change the event is about, so the event exists
-- exactly when the change does. SECURITY DEFINER so that it works whoever makes the change
-- (a tenant's transaction, or a housekeeping function spanning tenants); it reads and
-- writes only `p_tenant`'s rows, and outside a trigger only the tenant the transaction acts
-- as may be named. A tenant without endpoints costs one index probe. Returns the deliveries made.
CREATE FUNCTION enqueue_webhook(p_tenant uuid, p_event text, p_job uuid, p_data jsonb)
  RETURNS int
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  DECLARE
    made int;
  BEGIN
    IF pg_trigger_depth() = 0 AND current_tenant_id() IS DISTINCT FROM p_tenant THEN
      RAISE EXCEPTION 'enqueue_webhook: % is not the current tenant', p_tenant;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE tenant_id = p_tenant AND enabled) THEN
      RETURN 0;
    END IF;
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event, job_id, payload)
    SELECT p_tenant, e.id, msg.id, p_event, p_job,
           jsonb_build_object(
             'type', p_event,
             'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
             'data', p_data)
    FROM webhook_endpoints e,
         (SELECT 'msg_' || replace(gen_random_uuid()::text, '-', '') AS id) msg
    WHERE e.tenant_id = p_tenant AND e.enabled
      AND (cardinality(e.events) = 0 OR p_event = ANY (e.events));
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
  END
  $$;

-- A job's events (see job_event), with the job's thin snapshot; the links are added when
-- a delivery is sent.
CREATE FUNCTION enqueue_job_webhooks() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  DECLARE
    ev text;
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints
                   WHERE tenant_id = NEW.tenant_id AND enabled) THEN
      RETURN NULL;
    END IF;
    ev := job_event(CASE WHEN TG_OP = 'UPDATE' THEN to_jsonb(OLD) END, NEW);
    IF ev IS NOT NULL THEN
      PERFORM enqueue_webhook(NEW.tenant_id, ev, NEW.id, jsonb_build_object('job',
        jsonb_build_object(
          'id', NEW.id, 'operation', NEW.operation, 'status', NEW.status,
          'version', NEW.version, 'total', NEW.total, 'processed', NEW.processed,
          'succeeded', NEW.succeeded, 'failed', NEW.failed, 'skipped', NEW.skipped,
          'resultFile', NULL, 'errorsUrl', NULL)));
    END IF;
    RETURN NULL;
  END
  $$;

CREATE TRIGGER jobs_webhooks_insert AFTER INSERT ON jobs
  FOR EACH ROW EXECUTE FUNCTION enqueue_job_webhooks();
CREATE TRIGGER jobs_webhooks_status AFTER UPDATE OF status ON jobs
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION enqueue_job_webhooks();

-- Due deliveries of enabled endpoints, across tenants, claimed by one worker: each is
-- leased for `p_lease` (its next attempt is pushed that far ahead) and counts one more
-- attempt. Comes with what sending needs: the URL and the secrets that sign now.
CREATE FUNCTION claim_webhook_deliveries(p_limit int, p_lease interval)
  RETURNS TABLE (id uuid, tenant_id uuid, endpoint_id uuid, event_id text, event text,
                 payload jsonb, attempts int, url text, secrets text[])
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH due AS (
      SELECT d.id FROM webhook_deliveries d
      JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
      WHERE d.status = 'PENDING' AND d.next_attempt_at <= now()
      ORDER BY d.next_attempt_at, d.seq
      LIMIT p_limit
      FOR UPDATE OF d SKIP LOCKED),
    claimed AS (
      UPDATE webhook_deliveries d
      SET next_attempt_at = now() + p_lease, attempts = d.attempts + 1
      FROM due WHERE d.id = due.id
      RETURNING d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event, d.payload,
                d.attempts, d.seq)
    SELECT c.id, c.tenant_id, c.endpoint_id, c.event_id, c.event, c.payload, c.attempts,
           e.url,
           CASE WHEN e.previous_secret IS NOT NULL AND e.previous_secret_expires_at > now()
                THEN ARRAY[e.secret, e.previous_secret] ELSE ARRAY[e.secret] END
    FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id
    ORDER BY c.seq
  $$;

-- Deliveries that ended (delivered or failed) longer ago than the retention.
CREATE FUNCTION remove_expired_webhook_deliveries(p_retention interval) RETURNS bigint
  LANGUAGE sql SECURITY DEFINER SET search_path = public
  AS $$
    WITH gone AS (
      DELETE FROM webhook_deliveries
      WHERE status <> 'PENDING' AND created_at < now() - p_retention
      RETURNING 1)
    SELECT count(*) FROM gone
  $$;

REVOKE ALL ON FUNCTION enqueue_webhook(uuid, text, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION enqueue_webhook(uuid, text, uuid, jsonb) TO bulkops_app;
REVOKE ALL ON FUNCTION claim_webhook_deliveries(int, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_webhook_deliveries(int, interval) TO bulkops_app;
REVOKE ALL ON FUNCTION remove_expired_webhook_deliveries(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION remove_expired_webhook_deliveries(interval) TO bulkops_app;

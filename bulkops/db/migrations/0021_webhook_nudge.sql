-- A delivery written to the outbox wakes the webhook senders when its transaction commits
-- (NOTIFY is sent on commit, one per transaction), so it goes out at once instead of at
-- the senders' next poll. The poll stays for retries that come due later.
CREATE OR REPLACE FUNCTION enqueue_webhook(p_tenant uuid, p_event text, p_job uuid, p_data jsonb)
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
    IF made > 0 THEN
      PERFORM pg_notify('bulkops_webhooks', '');
    END IF;
    RETURN made;
  END
  $$;

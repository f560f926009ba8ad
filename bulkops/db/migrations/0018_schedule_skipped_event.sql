-- The event `schedule.skipped`: a tick of a schedule that did not fire (its previous job
-- still running, missed beyond the catch-up window, ...) is told to the tenant's webhook
-- endpoints, written in the same transaction as the tick's outcome.
CREATE FUNCTION enqueue_schedule_skipped() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
  AS $$
  BEGIN
    PERFORM enqueue_webhook(
      NEW.tenant_id,
      'schedule.skipped',
      NULL,
      jsonb_build_object(
        'schedule', jsonb_build_object(
          'id', NEW.schedule_id,
          'name', (SELECT name FROM schedules WHERE id = NEW.schedule_id)),
        'tick', jsonb_build_object(
          'at', to_char(NEW.tick_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
          'reason', NEW.reason)));
    RETURN NULL;
  END
  $$;

CREATE TRIGGER schedule_ticks_skipped_insert AFTER INSERT ON schedule_ticks
  FOR EACH ROW WHEN (NEW.outcome = 'SKIPPED')
  EXECUTE FUNCTION enqueue_schedule_skipped();
CREATE TRIGGER schedule_ticks_skipped_update AFTER UPDATE OF outcome ON schedule_ticks
  FOR EACH ROW WHEN (NEW.outcome = 'SKIPPED' AND OLD.outcome IS DISTINCT FROM NEW.outcome)
  EXECUTE FUNCTION enqueue_schedule_skipped();

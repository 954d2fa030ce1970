-- The timer used to read its table at every notification. Now the notification says which is
-- the earliest deadline a transaction scheduled (epoch milliseconds), so the timer reads the
-- table only when that deadline is earlier than the one it already waits for.
CREATE FUNCTION notify_deadline_scheduled() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    earliest TIMESTAMPTZ := (SELECT min(deadline) FROM scheduled WHERE status = 'PENDING');
BEGIN
    IF earliest IS NOT NULL THEN
        PERFORM pg_notify('deadline_scheduled',
                          (extract(epoch FROM earliest) * 1000)::bigint::text);
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER deadline_notify ON deadlines;
CREATE TRIGGER deadline_notify AFTER INSERT ON deadlines
    REFERENCING NEW TABLE AS scheduled
    FOR EACH STATEMENT EXECUTE FUNCTION notify_deadline_scheduled();

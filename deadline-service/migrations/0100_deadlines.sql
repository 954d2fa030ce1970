-- One deadline per saga. PENDING until it fires (FIRED) or the saga ends first (CANCELLED).
CREATE TABLE deadlines (
    order_id     BIGINT PRIMARY KEY,
    deadline     TIMESTAMPTZ NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'FIRED', 'CANCELLED')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    fired_at     TIMESTAMPTZ,
    cancelled_at TIMESTAMPTZ
);

-- The timer asks for the nearest pending deadline and for the due ones: both read this index.
CREATE INDEX deadlines_pending ON deadlines (deadline) WHERE status = 'PENDING';

-- Wake every timer listening on this database when a deadline is scheduled, at commit.
CREATE TRIGGER deadline_notify AFTER INSERT ON deadlines
    FOR EACH STATEMENT EXECUTE FUNCTION notify_on_insert('deadline_scheduled');

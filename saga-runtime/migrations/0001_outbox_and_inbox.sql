-- The messaging tables every service has, beside its own state.

-- Events written in the same transaction as the state change that causes them. The relay
-- publishes the unpublished ones in id order and stamps published_at; published rows stay for
-- a while as the record of what this service emitted (the saga view reads them), then are
-- pruned. The id orders them: one saga's events are written by successive transactions.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    order_id     BIGINT      NOT NULL,
    event_id     UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    payload      TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_order_id ON outbox (order_id);

-- Wakes whoever listens on the channel named by the trigger's argument when the inserting
-- transaction commits (NOTIFY is delivered at commit; one per statement is plenty). Services'
-- own migrations use it too.
CREATE FUNCTION notify_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END $$;

-- Wake the relay when a transaction that wrote events commits.
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_on_insert('outbox');

-- Every consumed event this service acted on or chose to ignore, keyed by eventId, written in
-- the same transaction as its effects: a redelivered event finds its row, is counted in
-- duplicates, and changes nothing else.
CREATE TABLE inbox (
    event_id    UUID PRIMARY KEY,
    order_id    BIGINT      NOT NULL,
    event_type  TEXT        NOT NULL,
    -- APPLIED, or IGNORED with the reason in detail (expired, late, already compensated).
    outcome     TEXT        NOT NULL DEFAULT 'APPLIED' CHECK (outcome IN ('APPLIED', 'IGNORED')),
    detail      TEXT,
    duplicates  INTEGER     NOT NULL DEFAULT 0,
    -- When the service decided: set at the claim, and again when it chose to ignore the event.
    handled_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX inbox_order_id ON inbox (order_id);

-- The messaging tables every service has, beside its own state.

-- Events written in the same transaction as the state change that causes them, until the relay
-- has published them. The id orders them: one saga's events are written by successive
-- transactions, so id order is their order.
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    order_id    BIGINT      NOT NULL,
    event_id    UUID        NOT NULL,
    event_type  TEXT        NOT NULL,
    payload     TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Wake the relay when a transaction that wrote events commits (NOTIFY is delivered at commit,
-- and one per statement is plenty).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Every consumed event this service acted on or chose to ignore, keyed by eventId, written in
-- the same transaction as its effects: a redelivered event finds its row and is skipped.
CREATE TABLE inbox (
    event_id    UUID PRIMARY KEY,
    order_id    BIGINT      NOT NULL,
    event_type  TEXT        NOT NULL,
    -- APPLIED, or IGNORED with the reason in detail (expired, late, already compensated).
    outcome     TEXT        NOT NULL DEFAULT 'APPLIED' CHECK (outcome IN ('APPLIED', 'IGNORED')),
    detail      TEXT,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX inbox_order_id ON inbox (order_id);

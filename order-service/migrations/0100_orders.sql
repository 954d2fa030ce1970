-- Orders, one row per saga. The deadline is fixed here, once, and travels in every event.
CREATE TABLE orders (
    id           BIGSERIAL PRIMARY KEY,
    holder_id    TEXT          NOT NULL,
    currency_id  TEXT,
    amount       NUMERIC       NOT NULL CHECK (amount > 0 AND scale(amount) <= 4),
    status       TEXT          NOT NULL DEFAULT 'PENDING' CHECK (status IN
                   ('PENDING', 'APPROVED', 'REJECTED DUE TO POINT LIMIT', 'REJECTED DUE TO DEADLINE')),
    reason       TEXT,
    deadline     TIMESTAMPTZ   NOT NULL,
    -- For a rejected order: PENDING until the compensation chain reports back, then DONE.
    compensation TEXT CHECK (compensation IN ('PENDING', 'DONE')),
    created_at   TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ   NOT NULL DEFAULT now()
);

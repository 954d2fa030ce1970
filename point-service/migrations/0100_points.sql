-- Point accounts. A balance can never go negative, whatever the code above does.
CREATE TABLE points (
    user_id    TEXT PRIMARY KEY,
    balance    NUMERIC       NOT NULL CHECK (balance >= 0 AND scale(balance) <= 4),
    created_at TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ   NOT NULL DEFAULT now()
);

-- The per-order ledger: one row per saga this service has decided on.
--   USED      points were taken;
--   REFUNDED  points were taken and given back by compensation;
--   REJECTED  nothing was taken (point limit, no account, or the saga was compensated first).
-- compensated_at marks that ExchangeCompensated was handled: after it, every late event of
-- the saga is ignored, and a second compensation refunds nothing.
CREATE TABLE point_transactions (
    order_id       BIGINT PRIMARY KEY,
    user_id        TEXT,
    point          NUMERIC       NOT NULL CHECK (point >= 0 AND scale(point) <= 4),
    status         TEXT          NOT NULL CHECK (status IN ('USED', 'REFUNDED', 'REJECTED')),
    reason         TEXT,
    created_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),
    compensated_at TIMESTAMPTZ
);

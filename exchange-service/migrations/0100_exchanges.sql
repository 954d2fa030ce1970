-- One row per saga this service has seen through: EXCHANGED while the exchange stands,
-- COMPENSATED once undone. A saga rejected before anything was exchanged still gets a
-- COMPENSATED row (user and amount unknown, point 0), so a late OrderCreated finds it and is
-- ignored instead of exchanging for a dead saga.
CREATE TABLE exchanges (
    order_id       BIGINT PRIMARY KEY,
    user_id        TEXT,
    currency_id    TEXT,
    amount         NUMERIC,
    point          NUMERIC       NOT NULL DEFAULT 0 CHECK (point >= 0 AND scale(point) <= 4),
    status         TEXT          NOT NULL CHECK (status IN ('EXCHANGED', 'COMPENSATED')),
    deadline       TIMESTAMPTZ   NOT NULL,
    created_at     TIMESTAMPTZ   NOT NULL DEFAULT now(),
    compensated_at TIMESTAMPTZ
);

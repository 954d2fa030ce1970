-- POST /orders with an Idempotency-Key header: the key names the order it created, for as long
-- as the order is kept, so a retry with the same key gets that order back instead of starting
-- a second saga. The index is partial: orders placed without a key cost it nothing.
ALTER TABLE orders ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX orders_by_idempotency_key ON orders (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

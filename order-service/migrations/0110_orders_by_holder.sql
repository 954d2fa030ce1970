-- GET /orders?holderId=X lists one holder's orders, newest first, without a scan of them all.
CREATE INDEX orders_by_holder ON orders (holder_id, id);

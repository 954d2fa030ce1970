-- The relay is woken by the process that committed (saga_runtime::outbox::Wake), not by a
-- NOTIFY: at commit, every notifying transaction of the cluster takes one lock in turn.
DROP TRIGGER outbox_notify ON outbox;

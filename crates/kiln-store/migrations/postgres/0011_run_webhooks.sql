-- Project webhooks for run events too, PostgreSQL flavour. Keep in step with
-- ../sqlite/0011_run_webhooks.sql: same tables, columns and constraints; only column types
-- differ. Never edit a migration once released: add the next one.

-- What a webhook receives: a comma-separated list of `push` (registry pushes) and `run`
-- (runs started, waiting for approval, ended). Webhooks made before this get pushes only.
ALTER TABLE registry_webhooks ADD COLUMN events TEXT NOT NULL DEFAULT 'push';
-- The key of each delivery's `X-Kiln-Signature` (HMAC-SHA256 of the body); NULL for webhooks
-- made before this, whose deliveries are unsigned.
ALTER TABLE registry_webhooks ADD COLUMN secret TEXT;

-- The outbox carries a typed payload: `push` rows name their registry event (`event_id`),
-- `run` rows hold the run event's JSON body (`payload`).
ALTER TABLE registry_outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'push';
ALTER TABLE registry_outbox ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE registry_outbox ADD COLUMN payload TEXT;
ALTER TABLE registry_outbox ADD CONSTRAINT registry_outbox_payload
    CHECK ((kind = 'push' AND event_id IS NOT NULL) OR (kind = 'run' AND payload IS NOT NULL));
CREATE INDEX registry_outbox_by_webhook ON registry_outbox (webhook_id, id);

-- Project webhooks for run events too, SQLite flavour. Keep in step with
-- ../postgres/0011_run_webhooks.sql: same tables, columns and constraints; only column types
-- differ (timestamps are RFC 3339 TEXT in UTC, JSON is TEXT). Never edit a migration once
-- released: add the next one.

-- What a webhook receives: a comma-separated list of `push` (registry pushes) and `run`
-- (runs started, waiting for approval, ended). Webhooks made before this get pushes only.
ALTER TABLE registry_webhooks ADD COLUMN events TEXT NOT NULL DEFAULT 'push';
-- The key of each delivery's `X-Kiln-Signature` (HMAC-SHA256 of the body); NULL for webhooks
-- made before this, whose deliveries are unsigned.
ALTER TABLE registry_webhooks ADD COLUMN secret TEXT;

-- The outbox carries a typed payload: `push` rows name their registry event (`event_id`),
-- `run` rows hold the run event's JSON body (`payload`). SQLite cannot drop NOT NULL from a
-- column, so the table is rebuilt (nothing references it).
CREATE TABLE registry_outbox_new (
    id            TEXT PRIMARY KEY,
    webhook_id    TEXT NOT NULL REFERENCES registry_webhooks (id) ON DELETE CASCADE,
    -- `push` or `run`
    kind          TEXT NOT NULL DEFAULT 'push',
    event_id      TEXT REFERENCES registry_events (id) ON DELETE CASCADE,
    payload       TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       TEXT NOT NULL,
    last_error    TEXT,
    -- `pending`, `delivered` or `failed`
    state         TEXT NOT NULL DEFAULT 'pending',
    updated_at    TEXT NOT NULL,
    CHECK ((kind = 'push' AND event_id IS NOT NULL) OR (kind = 'run' AND payload IS NOT NULL))
);
INSERT INTO registry_outbox_new (id, webhook_id, kind, event_id, payload, attempts, next_at,
                                 last_error, state, updated_at)
    SELECT id, webhook_id, 'push', event_id, NULL, attempts, next_at, last_error, state, updated_at
    FROM registry_outbox;
DROP TABLE registry_outbox;
ALTER TABLE registry_outbox_new RENAME TO registry_outbox;
CREATE INDEX registry_outbox_due ON registry_outbox (state, next_at);
CREATE INDEX registry_outbox_by_webhook ON registry_outbox (webhook_id, id);

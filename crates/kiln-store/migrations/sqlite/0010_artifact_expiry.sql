-- Artifacts past their age (sqlite flavour). Keep in step with ../postgres/0009_artifact_expiry.sql;
-- only column types differ. Never edit a migration once released: add the next one.

-- When the garbage collector expired this row: its blob is no longer named by it (and is
-- deleted once no live row names it); the row stays so that the API can say the artifacts
-- expired rather than that there never were any.
ALTER TABLE artifacts ADD COLUMN expired_at TEXT;

-- Workflow sources, PostgreSQL flavour. Keep in step with ../sqlite/0003_workflow_sources.sql.
-- A pipeline (and each run, as it was when created) keeps the file name its diagnostics name
-- and the template files its `uses:` reads, so the server can compile it again (a replay
-- after a restart compiles the run's own copy).

ALTER TABLE pipelines ADD COLUMN file TEXT NOT NULL DEFAULT '';
-- JSON object: resolved template path -> text
ALTER TABLE pipelines ADD COLUMN files JSONB NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN file TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN files JSONB NOT NULL DEFAULT '{}';

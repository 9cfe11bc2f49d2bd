-- Comments on approval decisions, SQLite flavour. Keep in step with
-- ../postgres/0028_approval_comments.sql. Never edit a migration once released: add the next one.

-- What the person who approved or rejected a stage wrote with the decision (masked with the
-- run's secrets before it is stored); NULL when they wrote nothing.
ALTER TABLE approvals ADD COLUMN comment TEXT;

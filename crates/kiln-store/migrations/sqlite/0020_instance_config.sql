-- The config release each service instance's files are from, SQLite flavour. Keep in step
-- with ../postgres/0020_instance_config.sql. Never edit a migration once released: add the
-- next one.

-- The release of its service's config application its agent last reported written (or
-- already there); NULL for an instance without config files, or before they were written.
ALTER TABLE service_instances ADD COLUMN config_release INTEGER;

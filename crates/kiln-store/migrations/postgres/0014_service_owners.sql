-- Services owned by a run (build-scoped service pools, a workflow's `service-pools`),
-- PostgreSQL flavour. Keep in step with ../sqlite/0014_service_owners.sql. Never edit a
-- migration once released: add the next one.

-- The run that owns the service (NULL: a service applied by hand); the service is deleted
-- when that run ends, and the server deletes it at start if the run ended while it was down.
ALTER TABLE services ADD COLUMN owner_run TEXT;
-- The job of that run that owns it (a job's own pool), NULL for a pool of the whole run;
-- deleted when that job ends.
ALTER TABLE services ADD COLUMN owner_job TEXT;
CREATE INDEX services_by_owner_run ON services (owner_run);

-- Array jobs (`array: N`), postgres flavour. Keep in step with ../sqlite/0026_job_arrays.sql.
-- Never edit a migration once released: add the next one.

-- Where each array job of a run stands: one row per array job, however many indexes it
-- has (never a row per index), replaced in the transaction that stores each step of the
-- run. `progress` is the API's ArrayProgress as JSON (counts, failed indexes as ranges,
-- the first failures' reasons, the durations histogram). The run's events are what a
-- restart replays; this row is what the API reads.
CREATE TABLE job_arrays (
    run_id   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_id   TEXT NOT NULL,
    progress TEXT NOT NULL,
    PRIMARY KEY (run_id, job_id)
);

-- Project quotas, agent tokens and the run state `scheduling`, PostgreSQL flavour. Keep in
-- step with ../sqlite/0006_quotas_agent_tokens_scheduling.sql. Never edit a migration once
-- released.

-- What one project may hold at once on the pool; NULL = no limit.
CREATE TABLE project_quotas (
    project_id    TEXT PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
    -- millicores
    cpu_millis    BIGINT CHECK (cpu_millis >= 0),
    memory_bytes  BIGINT CHECK (memory_bytes >= 0),
    -- jobs running at once
    jobs          BIGINT CHECK (jobs >= 0),
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A fourth role, `agent`: a token that may only run an agent.
ALTER TABLE tokens DROP CONSTRAINT tokens_role_check;
ALTER TABLE tokens ADD CONSTRAINT tokens_role_check
    CHECK (role IN ('agent', 'viewer', 'developer', 'admin'));

-- A run whose active jobs all wait for a node is `scheduling`.
ALTER TABLE runs DROP CONSTRAINT runs_state_check;
ALTER TABLE runs ADD CONSTRAINT runs_state_check
    CHECK (state IN ('pending', 'scheduling', 'running', 'paused', 'success', 'failure', 'canceled', 'timeout'));

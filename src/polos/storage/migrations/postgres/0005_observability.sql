-- 0005_observability: the listing and tree reads of the UI, the API and traces.
-- Each list filter gets an index that also gives the list's order (created_at DESC, id
-- DESC), so that a page reads only its own rows whatever the planner knows.

CREATE INDEX ix_executions_root ON executions (root_id, created_at, id);

DROP INDEX ix_executions_project_status;

CREATE INDEX ix_executions_project_status ON executions (project_id, status, created_at, id);

DROP INDEX ix_executions_project_workflow;

CREATE INDEX ix_executions_project_workflow ON executions (project_id, workflow_id, created_at, id);

CREATE INDEX ix_executions_children ON executions (parent_id, created_at, id) WHERE parent_id IS NOT NULL;

CREATE INDEX ix_executions_top_level ON executions (project_id, created_at, id) WHERE parent_id IS NULL;

-- 0005_observability: a root execution's whole tree (traces, the UI's execution page).

CREATE INDEX ix_executions_root ON executions (root_id, created_at);

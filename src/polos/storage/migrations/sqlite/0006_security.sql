-- 0006_security: API keys (stored as hashes), server secrets (signing), retention indexes.

CREATE TABLE api_keys (
	id TEXT NOT NULL,
	project_id TEXT,
	name TEXT NOT NULL,
	role TEXT NOT NULL,
	secret_hash TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	last_used_at BIGINT,
	revoked_at BIGINT,
	PRIMARY KEY (id),
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_api_keys_project ON api_keys (project_id, created_at);

CREATE TABLE server_secrets (
	name TEXT NOT NULL,
	value TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (name)
);

CREATE INDEX ix_executions_finished ON executions (completed_at) WHERE completed_at IS NOT NULL;

CREATE INDEX ix_events_created ON events (created_at);

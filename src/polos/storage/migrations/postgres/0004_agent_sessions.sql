-- 0004_agent_sessions: conversation memory of agent sessions (postgres).

CREATE TABLE agent_sessions (
	project_id TEXT NOT NULL, 
	id TEXT NOT NULL, 
	summary TEXT, 
	messages TEXT NOT NULL, 
	version INTEGER NOT NULL, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_agent_sessions_updated ON agent_sessions (project_id, updated_at, id);

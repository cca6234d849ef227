-- 0002_waits_events: waits, timers, the event log and event triggers (postgres).

ALTER TABLE executions ADD COLUMN parent_index INTEGER;

ALTER TABLE executions ADD COLUMN trigger_event TEXT;

CREATE INDEX ix_executions_parent ON executions (parent_id, parent_step_key) WHERE parent_id IS NOT NULL;

CREATE TABLE topics (
	project_id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	last_seq BIGINT NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, name), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE TABLE events (
	project_id TEXT NOT NULL, 
	topic TEXT NOT NULL, 
	seq BIGINT NOT NULL, 
	id TEXT NOT NULL, 
	data TEXT, 
	idempotency_key TEXT, 
	source_execution_id TEXT, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, topic, seq)
);

CREATE UNIQUE INDEX ux_events_id ON events (id);

CREATE UNIQUE INDEX ux_events_idempotency ON events (project_id, idempotency_key);

CREATE TABLE waits (
	execution_id TEXT NOT NULL, 
	step_key TEXT NOT NULL, 
	project_id TEXT NOT NULL, 
	workflow_id TEXT NOT NULL, 
	root_id TEXT, 
	kind TEXT NOT NULL, 
	step_kind TEXT NOT NULL, 
	seq INTEGER NOT NULL, 
	topic TEXT, 
	after_seq BIGINT, 
	data TEXT, 
	state TEXT, 
	expires_at BIGINT, 
	pending INTEGER, 
	started_at BIGINT NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (execution_id, step_key), 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE
);

CREATE INDEX ix_waits_due ON waits (expires_at) WHERE expires_at IS NOT NULL;

CREATE INDEX ix_waits_project_kind ON waits (project_id, kind, created_at);

CREATE INDEX ix_waits_topic ON waits (project_id, topic) WHERE topic IS NOT NULL;

CREATE TABLE triggers (
	project_id TEXT NOT NULL, 
	topic TEXT NOT NULL, 
	workflow_id TEXT NOT NULL, 
	cursor BIGINT NOT NULL, 
	batch_size INTEGER NOT NULL, 
	batch_timeout_ms BIGINT, 
	batch_due_at BIGINT, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, topic, workflow_id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_triggers_due ON triggers (batch_due_at) WHERE batch_due_at IS NOT NULL;

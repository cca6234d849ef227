-- 0001_init: the initial schema (postgres).

CREATE TABLE projects (
	id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	created_at BIGINT NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE executions (
	id TEXT NOT NULL, 
	project_id TEXT NOT NULL, 
	workflow_id TEXT NOT NULL, 
	status TEXT NOT NULL, 
	payload TEXT, 
	result TEXT, 
	error TEXT, 
	state TEXT, 
	attempt INTEGER DEFAULT '0' NOT NULL, 
	epoch INTEGER DEFAULT '0' NOT NULL, 
	worker_id TEXT, 
	failed_attempts INTEGER DEFAULT '0' NOT NULL, 
	crashed_attempts INTEGER DEFAULT '0' NOT NULL, 
	attempts TEXT DEFAULT '[]' NOT NULL, 
	retry TEXT NOT NULL, 
	max_recovery_attempts INTEGER NOT NULL, 
	parent_id TEXT, 
	root_id TEXT, 
	parent_step_key TEXT, 
	idempotency_key TEXT, 
	queue TEXT, 
	concurrency_key TEXT, 
	priority INTEGER DEFAULT '0' NOT NULL, 
	code_fingerprint TEXT, 
	code_changed BOOLEAN DEFAULT false NOT NULL, 
	cancelled_by TEXT, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	started_at BIGINT, 
	completed_at BIGINT, 
	available_at BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_executions_project_created ON executions (project_id, created_at, id);

CREATE INDEX ix_executions_project_status ON executions (project_id, status, created_at);

CREATE INDEX ix_executions_project_workflow ON executions (project_id, workflow_id, created_at);

CREATE INDEX ix_executions_queued ON executions (project_id, priority, available_at) WHERE status = 'queued';

CREATE INDEX ix_executions_queued_due ON executions (available_at) WHERE status = 'queued';

CREATE INDEX ix_executions_running_worker ON executions (worker_id) WHERE status = 'running';

CREATE UNIQUE INDEX ux_executions_idempotency ON executions (project_id, idempotency_key);

CREATE TABLE workers (
	id TEXT NOT NULL, 
	project_id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	hostname TEXT NOT NULL, 
	pid INTEGER NOT NULL, 
	orchestrator_id TEXT NOT NULL, 
	max_concurrent INTEGER NOT NULL, 
	status TEXT NOT NULL, 
	connected_at BIGINT NOT NULL, 
	last_heartbeat_at BIGINT NOT NULL, 
	lease_expires_at BIGINT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_workers_connected_lease ON workers (status, lease_expires_at);

CREATE TABLE workflows (
	project_id TEXT NOT NULL, 
	id TEXT NOT NULL, 
	kind TEXT NOT NULL, 
	fingerprint TEXT NOT NULL, 
	description TEXT, 
	options TEXT NOT NULL, 
	retry TEXT NOT NULL, 
	max_recovery_attempts INTEGER NOT NULL, 
	first_seen_at BIGINT NOT NULL, 
	last_seen_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE TABLE steps (
	execution_id TEXT NOT NULL, 
	key TEXT NOT NULL, 
	seq INTEGER NOT NULL, 
	kind TEXT NOT NULL, 
	output TEXT, 
	output_type TEXT, 
	error TEXT, 
	state TEXT, 
	attempts INTEGER DEFAULT '1' NOT NULL, 
	started_at BIGINT, 
	completed_at BIGINT, 
	PRIMARY KEY (execution_id, key), 
	FOREIGN KEY(execution_id) REFERENCES executions (id) ON DELETE CASCADE
);

CREATE TABLE worker_workflows (
	worker_id TEXT NOT NULL, 
	workflow_id TEXT NOT NULL, 
	fingerprint TEXT NOT NULL, 
	PRIMARY KEY (worker_id, workflow_id), 
	FOREIGN KEY(worker_id) REFERENCES workers (id) ON DELETE CASCADE
);

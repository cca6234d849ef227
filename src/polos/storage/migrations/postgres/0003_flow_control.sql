-- 0003_flow_control: queues, concurrency keys, rate limits, schedules and run timeouts (postgres).

ALTER TABLE executions ADD COLUMN run_timeout_ms BIGINT;

ALTER TABLE executions ADD COLUMN timeout_counts_waits BOOLEAN DEFAULT false NOT NULL;

ALTER TABLE executions ADD COLUMN run_elapsed_ms BIGINT DEFAULT '0' NOT NULL;

ALTER TABLE executions ADD COLUMN claimed_at BIGINT;

ALTER TABLE executions ADD COLUMN deadline_at BIGINT;

ALTER TABLE executions ADD COLUMN schedule_id TEXT;

CREATE INDEX ix_executions_deadline ON executions (deadline_at) WHERE deadline_at IS NOT NULL;

CREATE INDEX ix_executions_queued_flow ON executions (project_id, queue, priority DESC, available_at, id) WHERE status = 'queued' AND queue IS NOT NULL;

CREATE INDEX ix_executions_queued_flow_wf ON executions (project_id, queue, workflow_id, available_at) WHERE status = 'queued' AND queue IS NOT NULL;

CREATE INDEX ix_executions_queued_plain ON executions (project_id, priority DESC, available_at, id) WHERE status = 'queued' AND queue IS NULL;

CREATE INDEX ix_executions_running_flow ON executions (project_id, queue, concurrency_key) WHERE status = 'running' AND queue IS NOT NULL;

CREATE TABLE rate_limits (
	project_id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	max_units INTEGER NOT NULL, 
	period_ms BIGINT NOT NULL, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, name), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE TABLE queues (
	project_id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	concurrency_limit INTEGER, 
	per_key_limit INTEGER, 
	rate_limit TEXT, 
	per_key_rate_limit TEXT, 
	rate_blocked_until BIGINT, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, name), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE TABLE rate_usage (
	project_id TEXT NOT NULL, 
	name TEXT NOT NULL, 
	key TEXT NOT NULL, 
	at BIGINT NOT NULL, 
	units INTEGER NOT NULL, 
	execution_id TEXT
);

CREATE INDEX ix_rate_usage_window ON rate_usage (project_id, name, key, at);

CREATE TABLE schedules (
	project_id TEXT NOT NULL, 
	id TEXT NOT NULL, 
	workflow_id TEXT NOT NULL, 
	key TEXT NOT NULL, 
	cron TEXT NOT NULL, 
	timezone TEXT NOT NULL, 
	payload TEXT, 
	status TEXT NOT NULL, 
	catchup TEXT NOT NULL, 
	overlap TEXT NOT NULL, 
	source TEXT NOT NULL, 
	next_at BIGINT, 
	last_slot_at BIGINT, 
	last_execution_id TEXT, 
	created_at BIGINT NOT NULL, 
	updated_at BIGINT NOT NULL, 
	PRIMARY KEY (project_id, id), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);

CREATE INDEX ix_schedules_due ON schedules (next_at) WHERE status = 'active';

CREATE UNIQUE INDEX ux_schedules_workflow_key ON schedules (project_id, workflow_id, key);

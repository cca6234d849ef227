"""Table definitions: the single source of truth the migrations must reproduce.

Times are UTC epoch milliseconds (BIGINT). JSON values are stored as text
produced by the writer (so the orchestrator never re-encodes step outputs).
A NULL ``state``/``output`` column means "absent"; the JSON text ``null`` means
the value ``None``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("options", sa.Text, nullable=False),
    sa.Column("retry", sa.Text, nullable=False),
    sa.Column("max_recovery_attempts", sa.Integer, nullable=False),
    sa.Column("first_seen_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("state", sa.Text),
    # attempt counts claims; epoch is the fencing token, bumped on every claim
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
    sa.Column("worker_id", sa.Text),
    sa.Column("failed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("crashed_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempts", sa.Text, nullable=False, server_default="[]"),
    sa.Column("retry", sa.Text, nullable=False),
    sa.Column("max_recovery_attempts", sa.Integer, nullable=False),
    sa.Column("parent_id", sa.Text),
    sa.Column("root_id", sa.Text),
    sa.Column("parent_step_key", sa.Text),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("queue", sa.Text),
    sa.Column("concurrency_key", sa.Text),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("code_fingerprint", sa.Text),
    sa.Column("code_changed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cancelled_by", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
    sa.Column("available_at", sa.BigInteger, nullable=False),
    # 0002: position among the children started by one parent step; the event(s) that
    # started a triggered execution (JSON, without their data: the payload holds it)
    sa.Column("parent_index", sa.Integer),
    sa.Column("trigger_event", sa.Text),
    # 0003: run timeout (counted over running time unless timeout_counts_waits), the
    # running time of earlier attempts, when the current attempt was claimed, and the
    # moment the running attempt times out (NULL: no timeout or not running)
    sa.Column("run_timeout_ms", sa.BigInteger),
    sa.Column("timeout_counts_waits", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("run_elapsed_ms", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("claimed_at", sa.BigInteger),
    sa.Column("deadline_at", sa.BigInteger),
    sa.Column("schedule_id", sa.Text),
    # 0007: the state the execution started with (``state`` above is the latest one, which
    # every step snapshot overwrites); claims hand workers this one, so that a replay starts
    # where the first attempt did. FALSE (rows from before 0007): start from ``state``.
    sa.Column("initial_state", sa.Text),
    sa.Column("initial_state_recorded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ux_executions_idempotency", "project_id", "idempotency_key", unique=True),
    sa.Index(
        "ix_executions_queued",
        "project_id",
        "priority",
        "available_at",
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    ),
    sa.Index(
        "ix_executions_queued_due",
        "available_at",
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    ),
    sa.Index(
        "ix_executions_running_worker",
        "worker_id",
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
    sa.Index("ix_executions_project_created", "project_id", "created_at", "id"),
    # 0005: with id, so that each list filter's index also gives the list's order
    sa.Index("ix_executions_project_status", "project_id", "status", "created_at", "id"),
    sa.Index("ix_executions_project_workflow", "project_id", "workflow_id", "created_at", "id"),
    sa.Index(
        "ix_executions_queued_flow_wf",
        "project_id",
        "queue",
        "workflow_id",
        "available_at",
        sqlite_where=sa.text("status = 'queued' AND queue IS NOT NULL"),
        postgresql_where=sa.text("status = 'queued' AND queue IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_running_flow",
        "project_id",
        "queue",
        "concurrency_key",
        sqlite_where=sa.text("status = 'running' AND queue IS NOT NULL"),
        postgresql_where=sa.text("status = 'running' AND queue IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_deadline",
        "deadline_at",
        sqlite_where=sa.text("deadline_at IS NOT NULL"),
        postgresql_where=sa.text("deadline_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_parent",
        "parent_id",
        "parent_step_key",
        sqlite_where=sa.text("parent_id IS NOT NULL"),
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    ),
    # 0005: every execution of one root's tree (traces); children and top-level lists
    sa.Index("ix_executions_root", "root_id", "created_at", "id"),
    sa.Index(
        "ix_executions_children",
        "parent_id",
        "created_at",
        "id",
        sqlite_where=sa.text("parent_id IS NOT NULL"),
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_executions_top_level",
        "project_id",
        "created_at",
        "id",
        sqlite_where=sa.text("parent_id IS NULL"),
        postgresql_where=sa.text("parent_id IS NULL"),
    ),
)

# 0003: claim order (priority DESC, available_at, id) straight from an index, so that a
# claim reads only the rows it takes, however long the backlog: executions without a
# queue (the plain claim) and those of each queue (claims under limits).
sa.Index(
    "ix_executions_queued_plain",
    executions.c.project_id,
    executions.c.priority.desc(),
    executions.c.available_at,
    executions.c.id,
    sqlite_where=sa.text("status = 'queued' AND queue IS NULL"),
    postgresql_where=sa.text("status = 'queued' AND queue IS NULL"),
)
sa.Index(
    "ix_executions_queued_flow",
    executions.c.project_id,
    executions.c.queue,
    executions.c.priority.desc(),
    executions.c.available_at,
    executions.c.id,
    sqlite_where=sa.text("status = 'queued' AND queue IS NOT NULL"),
    postgresql_where=sa.text("status = 'queued' AND queue IS NOT NULL"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column(
        "execution_id",
        sa.Text,
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("output", sa.Text),
    sa.Column("output_type", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("orchestrator_id", sa.Text, nullable=False),
    sa.Column("max_concurrent", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("connected_at", sa.BigInteger, nullable=False),
    sa.Column("last_heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_workers_connected_lease", "status", "lease_expires_at"),
)

worker_workflows = sa.Table(
    "worker_workflows",
    metadata,
    sa.Column(
        "worker_id", sa.Text, sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("workflow_id", sa.Text, primary_key=True),
    sa.Column("fingerprint", sa.Text, nullable=False),
)

# ---------------------------------------------------------------------------- 0002: waits and events

topics = sa.Table(
    "topics",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    # The topic's row is its lock: publishers bump last_seq, waiters read it, in order.
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("data", sa.Text),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("source_execution_id", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ux_events_id", "id", unique=True),
    sa.Index("ux_events_idempotency", "project_id", "idempotency_key", unique=True),
)

waits = sa.Table(
    "waits",
    metadata,
    sa.Column(
        "execution_id",
        sa.Text,
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("step_key", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("root_id", sa.Text),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("step_kind", sa.Text, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("topic", sa.Text),
    sa.Column("after_seq", sa.BigInteger),
    sa.Column("data", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("pending", sa.Integer),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(
        "ix_waits_due",
        "expires_at",
        sqlite_where=sa.text("expires_at IS NOT NULL"),
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_waits_topic",
        "project_id",
        "topic",
        sqlite_where=sa.text("topic IS NOT NULL"),
        postgresql_where=sa.text("topic IS NOT NULL"),
    ),
    sa.Index("ix_waits_project_kind", "project_id", "kind", "created_at"),
)

triggers = sa.Table(
    "triggers",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, primary_key=True),
    # the last event seq of the topic that was turned into an execution (or skipped,
    # because it was published before the trigger was registered)
    sa.Column("cursor", sa.BigInteger, nullable=False),
    sa.Column("batch_size", sa.Integer, nullable=False),
    sa.Column("batch_timeout_ms", sa.BigInteger),
    sa.Column("batch_due_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index(
        "ix_triggers_due",
        "batch_due_at",
        sqlite_where=sa.text("batch_due_at IS NOT NULL"),
        postgresql_where=sa.text("batch_due_at IS NOT NULL"),
    ),
)

# ---------------------------------------------------------------------------- 0003: flow control

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("max_units", sa.Integer, nullable=False),
    sa.Column("period_ms", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

queues = sa.Table(
    "queues",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    # NULL limits: no limit. The row is also the queue's lock: claimers of the queue
    # lock it (PostgreSQL FOR UPDATE) before counting its running executions.
    sa.Column("concurrency_limit", sa.Integer),
    sa.Column("per_key_limit", sa.Integer),
    sa.Column("rate_limit", sa.Text),
    sa.Column("per_key_rate_limit", sa.Text),
    # when the queue's rate limit frees a unit again (set by a claim that found it used up)
    sa.Column("rate_blocked_until", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# One row per unit grant of a rate limit (a sliding log): the units used in the last
# period are the sum over rows with at > now - period; older rows are pruned.
rate_usage = sa.Table(
    "rate_usage",
    metadata,
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("execution_id", sa.Text),
    sa.Index("ix_rate_usage_window", "project_id", "name", "key", "at"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("cron", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("catchup", sa.Text, nullable=False),
    sa.Column("overlap", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("next_at", sa.BigInteger),
    sa.Column("last_slot_at", sa.BigInteger),
    sa.Column("last_execution_id", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ux_schedules_workflow_key", "project_id", "workflow_id", "key", unique=True),
    sa.Index(
        "ix_schedules_due",
        "next_at",
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    ),
)

# ---------------------------------------------------------------------------- 0004: agent sessions

# An agent session's conversation memory. ``messages`` is a JSON list of message objects
# that storage never looks into; ``version`` counts saves (optimistic concurrency: a save
# names the version it was based on).
agent_sessions = sa.Table(
    "agent_sessions",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("summary", sa.Text),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # GET /sessions: a project's sessions, most recently saved first
    sa.Index("ix_agent_sessions_updated", "project_id", "updated_at", "id"),
)

# ---------------------------------------------------------------------------- 0006: security

# API keys: the token ``polos_<id>_<secret>`` is shown once; only sha256(secret) is kept.
# ``project_id`` NULL and role ``admin``: a server-wide key (manages projects and keys, may
# act in any project); role ``project``: confined to its project.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.id")),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("secret_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger),
    sa.Column("revoked_at", sa.BigInteger),
    sa.Index("ix_api_keys_project", "project_id", "created_at"),
)

# Secrets shared by every orchestrator of one database (the HMAC key of signed links and
# UI sessions), made once on first use unless POLOS_SECRET_KEY gives one.
server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# Retention: finished executions by age, events by age.
sa.Index(
    "ix_executions_finished",
    executions.c.completed_at,
    sqlite_where=sa.text("completed_at IS NOT NULL"),
    postgresql_where=sa.text("completed_at IS NOT NULL"),
)
sa.Index("ix_events_created", events.c.created_at)
